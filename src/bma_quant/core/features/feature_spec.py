"""The fitted feature specification: everything needed to rebuild the model's features from a panel.

`FeatureSpec.transform(panel_long, market)` runs the same code as the feature_engineering
pipeline (factor library, per-date transforms, chosen EWM half-lives and lags, neutral fill) and
returns `date, ticker, <selected features>` (float32) for the rows of the panel, so the values are
identical to `model_input` for the same panel. Every step is causal, so a slice of a panel gives
the same values at its later dates as the whole panel, once the slice holds enough history
(`warmup_days`) for the longest window, lag and smoothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bma_quant.core.features.factors import (
    COLUMNS_OF_FAMILY,
    MARKET_FAMILY,
    USER_FAMILY,
    FactorConfig,
    Grid,
    TransformConfig,
    engineer_factors,
    prepare_inputs,
)
from bma_quant.core.features.selection import apply_lag, smoothed_values
from bma_quant.core.features.warmup import feature_history_days


@dataclass
class FeatureSpec:
    factor_config: FactorConfig
    transform_config: TransformConfig
    selected: list[str]
    lags: dict[str, int]
    halflives: dict[str, float]
    families: dict[str, str] = field(default_factory=dict)
    fill_value: float = 0.0  # neutral value of the transformed features (centred rank / z-score)
    degraded: bool = False

    @property
    def warmup_days(self) -> int:
        """Trading days of history a slice needs before its first date with full-history values
        (longest window + largest lag; EWM smoothing converges over a few half-lives more)."""
        return feature_history_days(
            self.factor_config,
            fear_greed="fear_greed" in self.selected,
            factor_performance=any(n.startswith("perf_") and self.families.get(n) == MARKET_FAMILY
                                   for n in self.selected),
            max_lag=max(self.lags.values(), default=0),
            max_halflife=max(self.halflives.values(), default=0.0))

    def missing_columns(self, features: list[str]) -> str:
        """The input columns that `features` (selected ones the panel could not produce) read,
        each with the features that need it, e.g. "open, high, low (kmid, klow); volume
        (pvcorr_20); noise_1 (a user factor)"."""
        needs: dict[str, list[str]] = {}
        for name in features:
            family = self.families.get(name)
            column = (COLUMNS_OF_FAMILY.get(family)
                      or (f"{name.removeprefix('user_')} (a user factor)"
                          if family == USER_FAMILY else f"the columns of family {family}"))
            needs.setdefault(column, []).append(name)
        return "; ".join(f"{column}" if column.endswith("(a user factor)")
                         else f"{column} ({', '.join(names)})" for column, names in needs.items())

    def visible_matrices(self, transformed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Selected features as the model sees them before the fill: smoothed, then lagged."""
        missing = [n for n in self.selected if n not in transformed]
        if missing:
            raise KeyError(
                "FeatureSpec: the panel lacks column(s) the selected features were built from: "
                f"{self.missing_columns(missing)}; give the columns the training file had")
        return {
            name: apply_lag(
                smoothed_values(transformed[name], self.halflives.get(name, 0.0)),
                int(self.lags.get(name, 0)),
            )
            for name in self.selected
        }

    def finalise(
        self, transformed: Mapping[str, np.ndarray], grid: Grid, visible: Mapping | None = None,
        in_universe: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Transformed matrices on `grid` -> long `date, ticker, <selected>` (float32, no NaN),
        sorted by (date, ticker). `visible` may pass the result of `visible_matrices(transformed)`
        when the caller already has it. `in_universe` (date x ticker bool) drops the cells outside
        the cross-section at t (no close, or not eligible): they are not predicted, traded or
        scored."""
        if visible is None:
            visible = self.visible_matrices(transformed)
        out = grid.sorted_keys()
        for name in self.selected:
            column = grid.to_long(visible[name]).astype(np.float32)
            column[~np.isfinite(column)] = np.float32(self.fill_value)
            out[name] = column
        if in_universe is not None:
            out = out[grid.to_long(np.asarray(in_universe, dtype=np.float64)) > 0.5]
            out = out.reset_index(drop=True)
        return out

    def transform(self, panel_long: pd.DataFrame, market: pd.DataFrame | None) -> pd.DataFrame:
        """Raw or processed long panel (+ market frame) -> `date, ticker, <selected>` float32."""
        inputs = prepare_inputs(panel_long, market, self.factor_config)
        transformed, _ = engineer_factors(
            inputs, self.factor_config, self.transform_config, names=self.selected
        )
        return self.finalise(transformed, inputs.grid, in_universe=inputs.in_universe)

    @property
    def market_context(self) -> list[str]:
        return [n for n in self.selected if self.families.get(n) == MARKET_FAMILY]
