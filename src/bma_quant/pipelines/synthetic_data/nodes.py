"""synthetic_data nodes: unpack parameters, call core, return data."""

from __future__ import annotations

import logging

import pandas as pd

from bma_quant.core.data.synthetic import (
    MARKET_ATTR,
    TIMING_ATTR,
    generate_synthetic_market,
    market_id,
)

logger = logging.getLogger(__name__)


def generate_synthetic_panel(
    params: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Generate the synthetic market described by `params:synthetic` (every key is an argument of
    generate_synthetic_market).

    Returns the long panel, the market index (date, level), the latent regimes (date, regime) and
    the true expected returns (date, ticker, expected_return).
    """
    market = generate_synthetic_market(**params)
    logger.info(
        "generated a synthetic market of %d tickers x %d days (seed %s)",
        market.panel["ticker"].nunique(), market.market.shape[0], params.get("seed"),
    )  # fmt: skip
    panel = market.panel
    # stored in the Parquet file's metadata: a later run on it is told when its label horizon or
    # delay differs from the one the signal was planted for (run_hooks/preflight.py)
    panel.attrs[TIMING_ATTR] = {"synthetic.horizon": int(params.get("horizon", 10)),
                                "synthetic.execution_delay": int(params.get("execution_delay", 1))}
    # every file of the market names it, so that no run mixes one market's prices with another's
    # index or regimes (run_hooks/preflight.py)
    identity = market_id(params)
    for frame in (panel, market.market, market.regimes, market.expected_return):
        frame.attrs[MARKET_ATTR] = identity
    return panel, market.market, market.regimes, market.expected_return
