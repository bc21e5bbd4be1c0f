"""Forward-return labels (DESIGN §3): the label at t is the return from close(t+d) to close(t+d+h)."""

from __future__ import annotations

import pandas as pd


def forward_return_labels(close: pd.DataFrame, horizon: int, execution_delay: int) -> pd.DataFrame:
    """Date x ticker matrix of forward returns; NaN where either end of the window is missing.

    The trade is placed at close(t+d), d trading days after the signal, and held h days."""
    entry = close.shift(-execution_delay)
    exit_ = close.shift(-(execution_delay + horizon))
    return exit_ / entry - 1.0
