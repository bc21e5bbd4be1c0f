"""The price grid (tick) a name trades on, read from its closes (framework-free).

Used where a price's smallest move matters: a limit price is rounded to the grid
(``core.evaluation.limit_locks``).
"""

from __future__ import annotations

import numpy as np

# candidate ticks, largest first: a name whose prices sit on one of these grids states its tick
PRICE_STEPS = (1.0, 0.5, 0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001)
# Defaults of evaluation.backtest.limit_locks.grid (conf/base/parameters_evaluation.yml), also
# for the split repair's one-name reading (`price_step`)
ON_GRID_SHARE = 0.95  # a few adjusted or odd prints do not hide the grid
GRID_WINDOW = 250  # trailing dates whose closes show a name's grid at a date
GRID_MIN_CLOSES = 20  # fewer closes in that window: no grid (no allowance), as for a new name


def _window_sums(flags: np.ndarray, window: int) -> np.ndarray:
    """Per column, the sum of `flags` over each row's trailing `window` rows (itself included)."""
    total = np.cumsum(flags, axis=0, dtype=np.int64)
    out = total.copy()
    out[window:] -= total[:-window]
    return out


def price_steps(close: np.ndarray, window: int = GRID_WINDOW,
                min_closes: int = GRID_MIN_CLOSES, on_grid_share: float = ON_GRID_SHARE
                ) -> np.ndarray:
    """(date x name) the price grid each name trades on at each date: the largest of
    PRICE_STEPS that `on_grid_share` of the positive closes of its trailing `window` dates (at
    least `min_closes` of them) are multiples of; 0 where none is (computed prices, too few closes).
    Causal, and local in time: a past the split repair rescaled is on its own grid (a 2:1
    split's earlier closes on half ticks) or on none (a 3:1 split's thirds), not on today's,
    and a tick size that changed is read where it held. Names on different grids (a penny
    stock's 0.0001, a board's 0.001) each get their own."""
    values = np.asarray(close, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(values) & (values > 0)
    counted = _window_sums(valid, window)
    enough = counted >= max(int(min_closes), 1)
    steps = np.zeros(values.shape)
    for step in reversed(PRICE_STEPS):  # finest first: a coarser grid that fits overrides it
        with np.errstate(invalid="ignore"):
            units = values / step
            on = valid & (np.abs(units - np.round(units)) <= 1e-6)
        share = _window_sums(on, window) >= on_grid_share * counted
        steps = np.where(enough & share, step, steps)
    return steps


def price_step(close: np.ndarray) -> float:
    """The largest of PRICE_STEPS that nearly every positive close of ``close`` (any shape,
    taken as one name, in order) is a multiple of (0: none)."""
    values = np.asarray(close, dtype=np.float64).ravel()
    return float(price_steps(values, window=max(len(values), 1), min_closes=1)[-1, 0])
