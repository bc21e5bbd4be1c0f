"""Inputs of `select_features` from a synthetic market: factors, 10-day labels, development dates
(the first 80 %) and purged walk-forward folds; shared by the selection tests."""

from bma_quant.core.data.cv import PurgedWalkForwardSplit
from bma_quant.core.data.labels import forward_return_labels
from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.features import factors as F


def selection_inputs(market, min_train_days: int, columns: list[str] | None = None):
    """(features, families, label, dates, dev, folds) of `market` (a SyntheticMarket); `columns`
    keeps only those panel columns (e.g. what a user's file would have)."""
    panel = market.panel if columns is None else market.panel[columns]
    config = F.FactorConfig()
    inputs = F.prepare_inputs(panel, market.market.rename(columns={"level": "market_level"}),
                              config)
    features, families = F.engineer_factors(inputs, config, F.TransformConfig())
    label = forward_return_labels(inputs.grid.frame(inputs.close), 10, 1).to_numpy()
    dates = inputs.grid.dates
    dev = dates[: int(len(dates) * 0.8)]
    folds = PurgedWalkForwardSplit(3, TemporalConfig(), min_train_days=min_train_days
                                   ).date_folds(dev)
    return features, families, label, dates, dev, folds
