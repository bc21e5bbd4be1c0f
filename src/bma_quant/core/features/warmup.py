"""How much raw history a slice of a panel needs before its first date (the warm-up).

A slice holding this many trading dates before a date gives the same features there as the whole
history (every step is causal), and the registered chain is fed that many (`warmup_days` in
model_registration.json). `largest_chain_warmup_days` bounds it from the parameters alone, before
feature selection has chosen which factors, lags and half-lives the chain keeps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bma_quant.core.data.universe import EligibilityRule
from bma_quant.core.features.factors import FactorConfig
from bma_quant.core.features.fear_greed import FearGreedParams

# An EWM's weight on data older than k half-lives is 2**-k of the total: below float32's
# relative precision (2**-24) after 24, so a slice that long gives the full history's values.
EWM_CONVERGED_HALFLIVES = 24


def feature_history_days(config: FactorConfig, fear_greed: bool, factor_performance: bool,
                         max_lag: int, max_halflife: float) -> int:
    """Trading days of history the factor library's longest window, plus a lag and EWM
    smoothing (EWM_CONVERGED_HALFLIVES half-lives to converge to float32 precision), reads
    before a date; with the fear-greed composite and the factor-performance columns when they
    are among the features."""
    # every family's windows, as FactorConfig.lookback_days reads them (a list kept here by
    # hand missed a family added later: its chain warmed up too short)
    windows = [config.longest_window()]
    if fear_greed:
        fg = FearGreedParams.from_params(dict(config.fear_greed_params))
        windows.append(max(fg.momentum_window, fg.high_low_window, fg.volatility_baseline_window)
                       + fg.normalisation_window)
    if factor_performance:
        windows.append(config.performance_params().performance_lookback_days())
    return int(max(windows, default=0) + max_lag
               + math.ceil(EWM_CONVERGED_HALFLIVES * max_halflife))


def chain_warmup_days(feature_days: int, temporal: Mapping[str, Any],
                      processing: Mapping[str, Any], registry: Mapping[str, Any] | None) -> int:
    """The chain's warm-up: its features' history (`feature_days`), `max_lookback_days` or the
    eligibility windows, whichever is longest, plus `registry.warmup_extra_days`, or
    `relist_after_days` when longer (the rows before the oldest date read must show a relisting's
    gap: its features and coverage start there)."""
    eligibility = processing["eligibility"]
    longest = max(int(temporal.get("max_lookback_days", 252)), int(feature_days or 0),
                  int(eligibility["window_days"]), int(eligibility.get("dollar_volume_days") or 0))
    return longest + max(int((registry or {}).get("warmup_extra_days", 0)),
                         EligibilityRule.from_params(processing).relist_after_days or 0)


def largest_chain_warmup_days(params: Mapping[str, Any]) -> int:
    """The warm-up of a chain that kept every factor (fear-greed and factor performance
    included) at the largest lag and half-life candidates: what any selection can need."""
    features = params["feature_engineering"]
    config = FactorConfig.from_params(features.get("factors"), features.get("fear_greed"))
    feature_days = feature_history_days(
        config, fear_greed=True, factor_performance=True,
        max_lag=max((features.get("lags") or {}).get("candidates") or [0]),
        max_halflife=max((features.get("ewm") or {}).get("halflife_candidates") or [0]))
    return chain_warmup_days(feature_days, params["temporal"], params["processing"],
                             params.get("registry"))
