"""Probability of backtest overfitting by combinatorially symmetric cross-validation (CSCV;
Bailey, Borwein, López de Prado & Zhu 2015).

The returns of N configurations over the same T dates (a T x N matrix) are cut into S contiguous
blocks (S even). For each of the C(S, S/2) ways to pick half of the blocks as "in sample" (the
rest, its complement, is "out of sample"), the configuration with the best in-sample Sharpe is
located among all N configurations out of sample: its relative rank w = rank / (N + 1) (rank 1 =
worst) gives the logit lambda = ln(w / (1 - w)). PBO is the share of splits with lambda <= 0: how
often the in-sample winner does no better than the median configuration out of sample. Pure noise
gives PBO near 0.5; a configuration with a real edge that wins in sample and keeps winning out of
sample gives PBO near 0.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

# C(S, S/2) grows fast (S = 20: 184,756 splits); beyond this the combinations cost more than
# they tell.
MAX_BLOCKS = 20


@dataclass(frozen=True)
class PBOResult:
    """PBO and the per-split detail (one row per in-sample / out-of-sample split)."""

    pbo: float
    n_blocks: int
    n_configurations: int
    n_obs: int
    # split, best_configuration, is_sharpe, oos_sharpe, oos_rank, omega, logit (per-period Sharpe)
    splits: pd.DataFrame

    @property
    def logits(self) -> np.ndarray:
        return self.splits["logit"].to_numpy()

    @property
    def probability_of_loss(self) -> float:
        """Share of splits whose in-sample winner has a negative out-of-sample Sharpe."""
        return float((self.splits["oos_sharpe"] < 0).mean())


def _block_sums(values: np.ndarray, n_blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block: count (S,), sum and sum of squares (S x N) of contiguous row blocks."""
    bounds = np.linspace(0, values.shape[0], n_blocks + 1).round().astype(int)
    counts = np.diff(bounds).astype(np.float64)
    sums = np.add.reduceat(values, bounds[:-1], axis=0)
    squares = np.add.reduceat(values**2, bounds[:-1], axis=0)
    return counts, sums, squares


def _sharpe_from_sums(n: np.ndarray, total: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Per-period Sharpe (mean / sample std) from counts (C,), sums and squares (C x N); a
    configuration without variance in a split ranks last (-inf)."""
    n = n[:, None]
    mean = total / n
    variance = (squares - n * mean**2) / (n - 1)
    tolerance = 1e-12 * squares / n  # rounding dust of a constant series is not risk
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = mean / np.sqrt(variance)
    return np.where(variance > tolerance, sharpe, -np.inf)


def cscv_pbo(returns: pd.DataFrame, n_blocks: int = 16) -> PBOResult:
    """PBO of the configurations in the columns of ``returns`` (rows = dates, in time order;
    no missing values: align the configurations on common dates first)."""
    values = returns.to_numpy(dtype=np.float64)
    n_obs, n_configs = values.shape
    if n_blocks < 2 or n_blocks % 2 or n_blocks > MAX_BLOCKS:
        raise ValueError(f"CSCV needs an even number of blocks between 2 and {MAX_BLOCKS}, "
                         f"got {n_blocks}")
    if n_configs < 2:
        raise ValueError(f"CSCV needs at least 2 configurations to rank, got {n_configs}")
    if n_obs < 2 * n_blocks:
        raise ValueError(f"CSCV needs at least 2 dates per block: {n_obs} dates for {n_blocks} "
                         "blocks")
    if not np.isfinite(values).all():
        raise ValueError("CSCV returns must be finite: align the configurations on common dates")
    counts, sums, squares = _block_sums(values, n_blocks)
    combos = list(itertools.combinations(range(n_blocks), n_blocks // 2))
    in_sample = np.zeros((len(combos), n_blocks))
    for row, blocks in enumerate(combos):
        in_sample[row, list(blocks)] = 1.0
    out_sample = 1.0 - in_sample
    is_sharpe = _sharpe_from_sums(in_sample @ counts, in_sample @ sums, in_sample @ squares)
    oos_sharpe = _sharpe_from_sums(out_sample @ counts, out_sample @ sums, out_sample @ squares)

    best = np.argmax(is_sharpe, axis=1)  # first of ties: the earlier configuration
    oos_rank = stats.rankdata(oos_sharpe, axis=1, method="average")[np.arange(len(combos)), best]
    omega = oos_rank / (n_configs + 1.0)
    logit = np.log(omega / (1.0 - omega))
    names = np.asarray(returns.columns, dtype=object)
    rows = np.arange(len(combos))
    splits = pd.DataFrame({
        "split": rows,
        "best_configuration": names[best],
        "is_sharpe": is_sharpe[rows, best],
        "oos_sharpe": oos_sharpe[rows, best],
        "oos_rank": oos_rank,
        "omega": omega,
        "logit": logit,
    })
    return PBOResult(pbo=float((logit <= 0).mean()), n_blocks=int(n_blocks),
                     n_configurations=int(n_configs), n_obs=int(n_obs), splits=splits)


def n_splits(n_blocks: int) -> int:
    """C(S, S/2): how many in-sample / out-of-sample splits CSCV scores."""
    return math.comb(n_blocks, n_blocks // 2)
