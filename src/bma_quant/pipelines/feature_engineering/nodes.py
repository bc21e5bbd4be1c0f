"""feature_engineering nodes: unpack parameters, call core, return data."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from bma_quant.core.data.cv import folds_from_table
from bma_quant.core.data.temporal import TemporalConfig
from bma_quant.core.evaluation import promotion
from bma_quant.core.features.decay import time_decay_weights
from bma_quant.core.features.factors import (
    MARKET_FAMILY,
    USER_FAMILY,
    FactorConfig,
    Grid,
    TransformConfig,
    iter_engineered_factors,
    prepare_inputs,
    values_are_ranks,
)
from bma_quant.core.features.feature_spec import FeatureSpec
from bma_quant.core.features.leak_audit import (
    LeakAuditConfig,
    audit_factor_table,
    factor_slice_computation,
)
from bma_quant.core.features.selection import (
    SelectionConfig,
    nothing_selected,
    scope_rows,
    select_features,
)
from bma_quant.pipelines.mlflow_format import as_mlflow_metrics

logger = logging.getLogger(__name__)


def _configs(params: dict) -> tuple[FactorConfig, TransformConfig]:
    factor_config = FactorConfig.from_params(params.get("factors"), params.get("fear_greed"))
    return factor_config, TransformConfig.from_params(params.get("transforms"))


def _dev_dates(dates: pd.DatetimeIndex, date_split: dict) -> pd.DatetimeIndex:
    start, end = pd.Timestamp(date_split["dev_start"]), pd.Timestamp(date_split["dev_end"])
    return dates[(dates >= start) & (dates <= end)]


def _wide_columns(frame: pd.DataFrame, names: list[str]) -> tuple[Grid, dict[str, np.ndarray]]:
    grid = Grid.from_long(frame)
    return grid, {n: grid.to_wide(frame[n].to_numpy(), dtype=np.float32) for n in names}


class _WideOnRead(Mapping):
    """Each factor's date x ticker matrix (float32), built from the long table when it is read:
    a consumer that reads one factor at a time holds one matrix, not all of them (on a
    survivorship-free panel each is dates x every name ever listed)."""

    def __init__(self, frame: pd.DataFrame, grid: Grid, names: list[str]) -> None:
        self._frame, self._grid, self._names = frame, grid, list(names)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        return self._grid.to_wide(self._frame[name].to_numpy(), dtype=np.float32)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def build_features(
    primary_panel: pd.DataFrame, market: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, dict]:
    """Every factor of the families the panel's columns allow, cross-sectionally transformed.

    Returns the long `features` table (float32) and a catalog {factor: family} with the panel's
    properties the later nodes need."""
    factor_config, transform_config = _configs(params)
    inputs = prepare_inputs(primary_panel, market, factor_config)
    grid = inputs.grid
    # Each factor goes to its long rows as soon as it is built: on a survivorship-free panel the
    # date x ever-listed-name matrices are several times the rows the panel has.
    values: dict[str, np.ndarray] = {}
    families: dict[str, str] = {}
    for name, family, matrix in iter_engineered_factors(inputs, factor_config, transform_config):
        values[name], families[name] = grid.to_long(matrix), family
    keys = grid.sorted_keys()
    features = pd.DataFrame(
        {
            "date": keys["date"].to_numpy(),
            "ticker": keys["ticker"].array,
            **values,
            IN_UNIVERSE: grid.to_long(inputs.in_universe.astype(np.float32)),
        }
    )
    by_family = pd.Series(families).value_counts().sort_index().to_dict()
    logger.info(
        "built %d factors on %d dates x %d tickers: %s",
        len(values),
        len(grid.dates),
        len(grid.tickers),
        ", ".join(f"{k} {v}" for k, v in by_family.items()),
    )
    catalog = {
        "families": families,
        "has_sectors": inputs.sector_codes is not None,
        "user_columns": sorted(inputs.user or {}),
    }
    return features, catalog


def _plain(value):
    """A JSON-friendly scalar (numpy numbers -> Python; non-finite floats -> None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def audit_leaks(
    primary_panel: pd.DataFrame,
    market: pd.DataFrame,
    features: pd.DataFrame,
    factor_catalog: dict,
    date_split: dict,
    cv_folds: pd.DataFrame,
    params: dict,
    temporal: dict,
) -> tuple[dict, pd.DataFrame]:
    """Run-time leak audit of every factor (core.features.leak_audit): prefix invariance of the computed
    factors and market context at a few development cut dates, and each factor's IC with every
    single future daily return r(t+j), j = 0 .. d + h. Returns the leak report (suspects with
    reasons) and the per-factor audit table."""
    factor_config, transform_config = _configs(params)
    temporal_config = TemporalConfig.from_params(temporal)
    config = LeakAuditConfig.from_params(params["leak_audit"])
    names = list(factor_catalog["families"])
    grid = Grid.from_long(features)
    matrices = _WideOnRead(features, grid, names)  # read factor by factor (memory)
    dev_dates = _dev_dates(grid.dates, date_split)
    dev_rows = np.flatnonzero(grid.dates.isin(dev_dates))
    folds = folds_from_table(cv_folds) if cv_folds is not None and len(cv_folds) else []
    profile_rows = scope_rows(grid.dates, dev_dates, folds,
                              str(params["selection"].get("ic_scope", "pre_cv")))
    panel_grid = Grid.from_long(primary_panel)
    if not (panel_grid.dates.equals(grid.dates) and panel_grid.tickers.equals(grid.tickers)):
        raise ValueError("leak audit: `features` and `primary_panel` are not on the same grid")
    close = panel_grid.to_wide(primary_panel["close"].to_numpy(np.float64))
    compute = factor_slice_computation(
        primary_panel, market, grid, factor_config, transform_config
    )
    audit = audit_factor_table(
        matrices,
        compute,
        close,
        grid.dates,
        dev_rows,
        factor_config.lookback_days(),
        temporal_config.label_span,
        config,
        values_are_ranks=values_are_ranks(transform_config),
        present=np.isfinite(grid.to_wide(np.ones(len(features)))),  # cells with a features row
        profile_rows=profile_rows,
        # user columns pass through: only their IC profile can show a copy of future returns
        scanned={n for n, family in factor_catalog["families"].items() if family == USER_FAMILY},
    )
    if audit.suspects:
        user = [n for n in audit.suspects if factor_catalog["families"].get(n) == USER_FAMILY]
        logger.warning(
            "leak audit: dropped %d factor(s) that read data after t: %s%s",
            len(audit.suspects),
            "; ".join(f"{n} ({r})" for n, r in audit.suspects.items()),
            f". If {', '.join(user)} holds data up to t only, list it in "
            "feature_engineering.leak_audit.causal_columns (in conf/local/parameters.yml)"
            if user else "",
        )
    report = {
        "suspects": audit.suspects,
        "suspect_families": {n: factor_catalog["families"][n] for n in audit.suspects},
        "suspect_numbers": {
            row["factor"]: {k: _plain(v) for k, v in row.items() if k != "factor"}
            for row in audit.table[audit.table["suspect"]].to_dict(orient="records")
        },
        "factors_audited": len(names),
        "prefix_cut_dates": audit.cut_dates,
        "prefix_history_days": factor_config.lookback_days(),
        "future_days": temporal_config.label_span,
        "config": dict(config.__dict__),
    }
    return report, audit.table


def select(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    date_split: dict,
    cv_folds: pd.DataFrame,
    factor_catalog: dict,
    leak_report: dict,
    params: dict,
    temporal: dict,
) -> tuple[FeatureSpec, dict, pd.DataFrame]:
    """Half-life and lag choices, IC scoring, filters and the leak guard on development dates,
    over the factors the leak audit did not drop."""
    factor_config, transform_config = _configs(params)
    temporal_config = TemporalConfig.from_params(temporal)
    config = SelectionConfig.from_params(
        params["selection"], params["lags"], params["ewm"], nw_lag=temporal_config.horizon_days,
        label_span=temporal_config.label_span,
    )
    audit_dropped = leak_report["suspects"]
    families = {n: f for n, f in factor_catalog["families"].items() if n not in audit_dropped}
    names = list(families)
    grid = Grid.from_long(features)
    matrices = _WideOnRead(features, grid, names)
    label_rows = grid.dates.get_indexer(pd.DatetimeIndex(labels["date"]))
    label_cols = grid.tickers.get_indexer(labels["ticker"].astype(str))
    keep = (label_rows >= 0) & (label_cols >= 0)
    label = np.full(grid.shape, np.nan)
    label[label_rows[keep], label_cols[keep]] = labels["label"].to_numpy(np.float64)[keep]
    dev = _dev_dates(grid.dates, date_split)
    folds = folds_from_table(cv_folds) if cv_folds is not None and len(cv_folds) else []
    result = select_features(
        matrices,
        families,
        label,
        grid.dates,
        dev,
        folds,
        config,
        values_are_ranks=values_are_ranks(transform_config),
    )
    nothing = nothing_selected(result, families, config)
    if nothing is not None:
        raise nothing
    spec = FeatureSpec(
        factor_config=factor_config,
        transform_config=transform_config,
        selected=result.selected,
        lags=result.lags,
        halflives=result.halflives,
        families={n: families[n] for n in result.selected},
        fill_value=float(params.get("fill_value", 0.0)),
        degraded=result.degraded,
    )
    report = {
        **result.report,
        "dev_start": date_split["dev_start"],
        "dev_end": date_split["dev_end"],
        "families": families,
        "leak_audit_dropped": audit_dropped,
        "user_columns": factor_catalog["user_columns"],
        "transforms": {
            "method": transform_config.method,
            "winsorise": list(transform_config.winsorise or []),
            "sector_neutralised": bool(
                transform_config.sector_neutralise and factor_catalog["has_sectors"]
            ),
        },
        "warmup_days": spec.warmup_days,
    }
    _say_whether_oof_scores_are_honest(report)
    logger.info(
        "selected %d of %d factors (%s mode): %s",
        len(result.selected),
        len(names),
        report["mode"],
        ", ".join(result.selected),
    )
    return spec, report, result.table


def _say_whether_oof_scores_are_honest(report: dict) -> None:
    """Tag the run `oof_scores_honest` and warn when selection read the CV test windows: every
    out-of-fold score downstream (base, regime and ensemble) is then optimistic."""
    honest = bool(report["cv_test_dates_unseen"])
    if not honest:
        logger.warning("feature selection scored dates of the CV test windows (%s): the "
                       "out-of-fold scores of every later layer are optimistic, and the run "
                       "cannot become the registry's champion (selection.ic_scope pre_cv keeps "
                       "them honest)", report["ic_scope"])
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.set_tag(promotion.OOF_HONEST, "true" if honest else "false")


# `features` column marking cells in the point-in-time cross-section at t (1.0) or not (0.0);
# not a factor.
IN_UNIVERSE = "in_universe"


def make_model_input(
    features: pd.DataFrame, labels: pd.DataFrame, feature_spec: FeatureSpec
) -> tuple[pd.DataFrame, dict]:
    """`date, ticker, label, <selected>` for every (date, ticker) row in the cross-section at t
    (eligible: a close, enough history and trailing coverage), dev and test dates."""
    grid, matrices = _wide_columns(features, [*feature_spec.selected, IN_UNIVERSE])
    in_universe = matrices.pop(IN_UNIVERSE) > 0.5
    visible = feature_spec.visible_matrices(matrices)
    rows = grid.to_long(in_universe.astype(float)) > 0.5
    filled = sum(int((~np.isfinite(grid.to_long(m)[rows])).sum()) for m in visible.values())
    out = feature_spec.finalise(matrices, grid, visible, in_universe=in_universe)
    label = labels[["date", "ticker", "label"]].copy()
    label["ticker"] = label["ticker"].astype(str)
    out = out.merge(label, on=["date", "ticker"], how="left", sort=False)
    out = out[["date", "ticker", "label", *feature_spec.selected]]
    cells = len(out) * max(1, len(feature_spec.selected))
    stats = {"model_input_rows": len(out), "model_input_fill_share": filled / cells}
    return out, stats


def make_sample_weights(
    primary_panel: pd.DataFrame, date_split: dict, sample_weights: dict
) -> pd.DataFrame:
    """Time-decay weights for development dates (half-life in trading days); reads only its own
    parameters (`feature_engineering.sample_weights`), so their lineage names only them."""
    dates = pd.DatetimeIndex(primary_panel["date"].unique()).sort_values()
    half_life = (sample_weights or {}).get("half_life_days")
    return time_decay_weights(_dev_dates(dates, date_split), half_life)


def feature_metrics(
    selection_report: dict,
    factor_ic_table: pd.DataFrame,
    model_input_stats: dict,
    leak_report: dict,
) -> dict:
    """`feature_engineering.*` metrics; `leak_suspects` counts the factors the leak audit and the
    selection's |RankIC| guard dropped."""
    selected = factor_ic_table.loc[factor_ic_table.get("selected", False) == True]  # noqa: E712
    abs_ic = (
        selected["rank_ic_mean"].abs() if "rank_ic_mean" in selected else pd.Series(dtype=float)
    )
    values = {
        "factors_built": selection_report["factors_built"],
        "factors_kept": selection_report["factors_kept"],
        "leak_suspects": len(selection_report["leak_suspects"]) + len(leak_report["suspects"]),
        "leak_audit_suspects": len(leak_report["suspects"]),
        "degraded_mode": 1 if selection_report["mode"] == "degraded" else 0,
        "ic_dates": selection_report["ic_dates"],
        "timed_ic_only_factors": len(selection_report.get("significant_by_timed_ic_only", [])),
        "market_context_factors": sum(
            1 for n in selection_report["selected"]
            if selection_report.get("families", {}).get(n) == MARKET_FAMILY),
        "lagged_factors": sum(1 for v in selection_report["lags"].values() if v > 0),
        "smoothed_factors": sum(1 for v in selection_report["ewm_halflives"].values() if v > 0),
        "selected_mean_abs_rank_ic": float(abs_ic.mean()) if len(abs_ic) else math.nan,
        "selected_max_abs_rank_ic": float(abs_ic.max()) if len(abs_ic) else math.nan,
        **model_input_stats,
    }
    return as_mlflow_metrics(values)
