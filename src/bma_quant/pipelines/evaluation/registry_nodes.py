"""evaluation's registry nodes: the serving chain (every fitted object plus the cleaning
settings), its reproduction of the test predictions from raw prices, the development score the
champion comparison reads, and the registration in MLflow's model registry."""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from bma_quant.core.data import panel as panel_lib
from bma_quant.core.evaluation import test_period
from bma_quant.core.features.selection import selection_left_cv_unread
from bma_quant.core.features.warmup import chain_warmup_days
from bma_quant.run_hooks.interrupts import interruption_in
from bma_quant.serving.chain import PanelCleaner, PredictionChain

logger = logging.getLogger(__name__)


def build_prediction_chain(
    feature_spec: Any,
    base_models: dict,
    regime_model: Any,
    ensemble: Any,
    primary_panel: pd.DataFrame,
    regimes: pd.DataFrame,
    data_quality_report: dict,
    data: dict,
    processing: dict,
    temporal: dict,
    registry: dict,
    base_model_params: dict | None = None,
    evaluation: dict | None = None,
    date_split: dict | None = None,
) -> PredictionChain:
    """Every fitted object plus the cleaning settings: raw panel slice -> final predictions.

    Warm-up (core.features.warmup.chain_warmup_days): the longest of the spec's own
    ``warmup_days``, ``max_lookback_days`` and the eligibility windows, plus
    ``registry.warmup_extra_days`` (or ``relist_after_days`` when longer), so EWM-smoothed
    features have converged to float32 precision and a slice reproduces the full-history values
    exactly."""
    cleaner = PanelCleaner.from_params(
        primary_panel["ticker"].unique(), processing,
        (data_quality_report or {}).get("first_close"),
        (data_quality_report or {}).get("first_volume"),
        bool((data_quality_report or {}).get("empty_close_suspensions")),
        (data_quality_report or {}).get("empty_close_padding_from"),
    )
    index = panel_lib.load_configured_index(data)
    return PredictionChain(
        cleaner=cleaner,
        feature_spec=feature_spec,
        base_models=dict(base_models),
        regime_model=regime_model,
        ensemble=ensemble,
        market_index=index if len(index) else None,
        warmup_days=chain_warmup_days(int(getattr(feature_spec, "warmup_days", 0) or 0),
                                      temporal, processing, registry),
        known_regimes=regimes.reset_index(drop=True) if regimes is not None else None,
        training_data={key: data.get(key) for key in panel_lib.READ_KEYS},
        data_start=_complete_history_start(primary_panel, data_quality_report),
        training_sectors=_neutralised_sectors(feature_spec, primary_panel),
        unsectored_names=_unsectored_names(primary_panel),
        data_end=str(pd.Timestamp(primary_panel["date"].max()).date()),
        typical_names=_typical_names(primary_panel, int(registry["typical_names_dates"])),
        thin_cross_section_share=float(registry["thin_cross_section_share"]),
        last_names=_last_names(primary_panel),
        label_target=label_target(temporal),
        training_run_id=_active_run_id(),
        models_run_id=_fitting_run(base_models),
        base_features=list((base_model_params or {}).get("features") or []) or None,
        backtest_quantiles=_backtest_quantiles(evaluation),
        development_end=(date_split or {}).get("dev_end"),
    )


def _backtest_quantiles(evaluation: dict | None) -> int | None:
    """The quantiles the test-period backtest traded: inference serves that book by default."""
    value = ((evaluation or {}).get("backtest") or {}).get("n_quantiles")
    return None if value is None else int(value)


def _fitting_run(base_models: dict) -> str | None:
    """The run that fitted the base learners (they carry its id), or None when unknown."""
    from bma_quant.pipelines.base_models.nodes import FITTED_IN_RUN

    runs = sorted({str(getattr(m, FITTED_IN_RUN)) for m in (base_models or {}).values()
                   if getattr(m, FITTED_IN_RUN, None)})
    return runs[0] if len(runs) == 1 else None


def _active_run_id() -> str | None:
    """The MLflow run training this chain (None outside one): inference runs name it."""
    import mlflow

    run = mlflow.active_run()
    return run.info.run_id if run is not None else None


def _neutralised_sectors(feature_spec: Any, primary_panel: pd.DataFrame) -> list[str] | None:
    """The sector labels training demeaned features within: [] when neutralisation was on but
    the panel had no sectors, None when it was off."""
    transform = getattr(feature_spec, "transform_config", None)
    if not getattr(transform, "sector_neutralise", False):
        return None
    if "sector" not in primary_panel:
        return []
    return sorted(primary_panel["sector"].dropna().astype(str).unique())


def _unsectored_names(primary_panel: pd.DataFrame) -> list[str]:
    """Names without a sector on any date of the training panel (its no_sector warning)."""
    if "sector" not in primary_panel:
        return []
    has = primary_panel["sector"].notna().groupby(primary_panel["ticker"]).any()
    return sorted(map(str, has.index[~has]))


def _typical_names(primary_panel: pd.DataFrame, last_dates: int) -> int | None:
    """Median number of eligible names over the training panel's last `last_dates` dates."""
    if "eligible" not in primary_panel or primary_panel.empty:
        return None
    counts = primary_panel.groupby("date")["eligible"].sum().sort_index().tail(last_dates)
    return int(counts.median()) if len(counts) else None


def _last_names(primary_panel: pd.DataFrame) -> list[str] | None:
    """The names in the cross-section (eligible) on the training panel's last date."""
    if primary_panel.empty:
        return None
    last = primary_panel.loc[primary_panel["date"] == primary_panel["date"].max()]
    if "eligible" in last:
        last = last.loc[last["eligible"].astype(bool)]
    return sorted(last["ticker"].astype(str).unique())


def _complete_history_start(primary_panel: pd.DataFrame, data_quality_report: dict | None
                            ) -> str | None:
    """The first date of the training panel when it is also the raw file's first close (then a
    slice starting there has every date of history the pipeline had, cleaning and features
    alike); None when periods.dev_start cut earlier history off (features started later than
    cleaning, so only a full warm-up reproduces them)."""
    first = pd.Timestamp(primary_panel["date"].min())
    closes = (data_quality_report or {}).get("first_close") or {}
    raw_first = min(pd.Timestamp(d) for d in closes.values()) if closes else None
    return str(first.date()) if raw_first is not None and raw_first == first else None


def checked_period(raw: pd.DataFrame, date_split: dict, last_dates: int | None = None
                   ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(first, last) test date the reproduction check covers: the whole test period, or its
    last ``last_dates`` trading dates."""
    end = pd.Timestamp(date_split["test_end"])
    start = pd.Timestamp(date_split["test_start"])
    if last_dates:
        dates = pd.DatetimeIndex(np.sort(raw["date"].unique()))
        dates = dates[(dates >= start) & (dates <= end)]
        if len(dates) > int(last_dates):
            start = dates[-int(last_dates)]
    return start, end


def test_slice(raw: pd.DataFrame, date_split: dict, warmup_days: int,
               last_dates: int | None = None,
               calendar: pd.DatetimeIndex | None = None) -> pd.DataFrame:
    """Raw rows from ``warmup_days`` trading dates before the checked period to test_end.

    ``calendar``: the dates the chain's cleaner keeps (``PanelCleaner.kept_dates``), which the
    chain counts its warm-up on; None = every raw date. Counted on raw dates, a panel whose
    strict filter drops dates (two exchanges' holidays) would give the chain too short a warm-up
    and no predictions for the first checked dates."""
    start, end = checked_period(raw, date_split, last_dates)
    dates = (pd.DatetimeIndex(np.sort(raw["date"].unique())) if calendar is None
             else pd.DatetimeIndex(calendar).sort_values())
    first = dates[max(0, dates.searchsorted(start) - warmup_days)]
    keep = (raw["date"] >= first) & (raw["date"] <= end)
    return raw.loc[keep].reset_index(drop=True)


DATA_LOGGERS = ("bma_quant.core.data",)  # reading and validating a raw file


@contextlib.contextmanager
def _warnings_said_before(names: tuple[str, ...]):
    """Reading the raw file again (to feed the chain raw prices) repeated every warning
    data_processing gave about it; errors still show."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def reproduction_check(
    chain: PredictionChain, raw_slice: pd.DataFrame, ensemble_test_predictions: pd.DataFrame,
    date_split: dict, model: str = "final", last_dates: int | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Run the chain on the raw test slice and compare with the pipeline's test predictions
    (on the checked period: the whole test period or its last ``last_dates`` dates)."""
    start, end = checked_period(raw_slice, date_split, last_dates)
    predicted = test_period.restrict_to_period(chain.predict(raw_slice, start), start, end)
    expected = ensemble_test_predictions.loc[ensemble_test_predictions["model"] == model,
                                             ["date", "ticker", "prediction"]]
    expected = test_period.restrict_to_period(expected, start, end)
    both = expected.merge(predicted, on=["date", "ticker"], how="outer",
                          suffixes=("_pipeline", "_chain"))
    a, b = both["prediction_pipeline"].to_numpy(float), both["prediction_chain"].to_numpy(float)
    matched = np.isfinite(a) & np.isfinite(b)
    diff = np.abs(a[matched] - b[matched])
    stats = {
        "dates_checked": int(both["date"].nunique()),
        "rows_pipeline": int(np.isfinite(a).sum()),
        "rows_chain": int(np.isfinite(b).sum()),
        "rows_matched": int(matched.sum()),
        "max_abs_diff": float(diff.max()) if diff.size else math.nan,
        "correlation": (float(np.corrcoef(a[matched], b[matched])[0, 1]) if diff.size > 1
                        else math.nan),
    }
    if diff.size:  # the rows that differ most, to find what the chain computes differently
        worst = both.loc[matched].assign(diff=diff).nlargest(3, "diff")
        stats["largest_diffs"] = [f"{r.ticker}@{pd.Timestamp(r.date).date()} {r.diff:.3g}"
                                  for r in worst.itertuples() if r.diff > 0]
    return predicted, stats


def development_score(
    ensemble_report: dict,
    base_model_status: dict,
    regime_models_report: dict,
    cv_folds: pd.DataFrame,
    feature_selection_report: dict,
    date_split: dict,
    params: dict,
    temporal: dict,
) -> dict[str, Any]:
    """The gated model's development out-of-fold RankIC and what it was measured on (the
    development period, the fold layout, and whether feature selection left the CV test windows
    unread, which makes it honest): the champion comparison's score (core.evaluation.promotion)."""
    from bma_quant.core.evaluation import promotion

    model = str((params.get("gates") or {}).get("model", "final"))
    metric, value = promotion.development_score(
        model, (ensemble_report or {}).get("selection"), base_model_status,
        ((regime_models_report or {}).get("training") or {}).get("cv"))
    return {"model": model, "metric": metric, "value": value,
            "dev_start": str(date_split.get("dev_start")), "dev_end": str(date_split.get("dev_end")),
            "folds": promotion.folds_fingerprint(cv_folds),
            "oof_honest": selection_left_cv_unread(feature_selection_report or {}),
            "target": label_target(temporal)}


def label_target(temporal: dict) -> str:
    """The label a score ranks, in words: a RankIC against 5-day returns is not one against
    10-day returns (the champion comparison needs the same)."""
    return (f"{int(temporal['prediction_horizon_days'])}d return after "
            f"{int(temporal['execution_delay_days'])}d delay")


def _cut_history_cause(chain: PredictionChain, raw_slice: pd.DataFrame, date_split: dict
                       ) -> str | None:
    """periods.dev_start cut the file's earlier dates off the pipeline while the chain's warm-up
    reads them: then the two computed the first test dates' features from different histories."""
    dev_start = date_split.get("dev_start")
    if chain.data_start is not None or not len(raw_slice) or not dev_start \
            or raw_slice["date"].min() >= pd.Timestamp(dev_start):
        return None
    return (f"periods.dev_start ({dev_start}) is the likely cause: the chain's warm-up of "
            f"{chain.warmup_days} dates reads the file from "
            f"{pd.Timestamp(raw_slice['date'].min()).date()}, while the pipeline's features had "
            "no history before dev_start; set it earlier (or null)")


def _reproduction_mismatch(stats: dict, tolerance: float, cause: str | None = None) -> str | None:
    """Why the chain's predictions on the raw test slice do not reproduce the pipeline's test
    predictions (a row missing, or a difference above ``tolerance``); None when they do.
    ``cause``: what is known to differ between the two (else the usual suspects are named)."""
    if stats["rows_matched"] == stats["rows_pipeline"] > 0 and stats["max_abs_diff"] <= tolerance:
        return None
    if stats["rows_matched"] < stats["rows_pipeline"]:
        return f"it predicts {stats['rows_matched']} of the pipeline's {stats['rows_pipeline']} test rows"
    return (f"max |diff| {stats['max_abs_diff']:.3g} > {tolerance:g} (largest: "
            f"{', '.join(stats.get('largest_diffs') or [])}); " + (cause or (
                "the chain sees only the warm-up before the checked dates, so a feature or "
                "cleaning step that reads further back than the warm-up (or depends on where the "
                "slice starts) is the likely cause; the scores are ranks, so a tiny feature "
                "difference can swap two names")))


def _registry_candidate(gate_report: dict, development: dict, date_split: dict,
                        data_fingerprint: str | None = None, served: str | None = None):
    """The promotion candidate: the gates on the test period, and the development out-of-fold
    score (with its period, fold layout, data and honesty) that alone decides against the
    champion."""
    from bma_quant.core.evaluation import promotion

    period = gate_report.get("test_period") or date_split
    return promotion.Candidate(
        gates_passed=bool(gate_report["passed"]), failed_gates=tuple(gate_report.get("failed") or ()),
        test_start=str(period.get("test_start")), test_end=str(period.get("test_end")),
        metric=str(development.get("metric", "stacking.final.oos_rank_ic")),
        value=development.get("value"), dev_start=str(date_split.get("dev_start")),
        dev_end=str(date_split.get("dev_end")), folds=development.get("folds"),
        data_fingerprint=data_fingerprint, oof_honest=bool(development.get("oof_honest")),
        target=development.get("target"),
        gate_settings=promotion.gate_settings_fingerprint(gate_report.get("settings")),
        served=served)


def register_model(
    prediction_chain: PredictionChain,
    gate_report: dict,
    ensemble_test_predictions: pd.DataFrame,
    development: dict,
    date_split: dict,
    data: dict,
    registry: dict,
) -> dict[str, Any]:
    """Check that the chain reproduces the test predictions, then (with an active MLflow run and
    ``registry.enabled``) log it as a pyfunc model and register it as champion or challenger
    (gates on the test period, then the gated model's development out-of-fold RankIC against
    the champion's: core.evaluation.promotion)."""
    raw_slice = _raw_test_slice(prediction_chain, date_split, data, registry)
    out: dict[str, Any] = {"gates_passed": bool(gate_report["passed"]),
                           # the history a request to the chain needs before its first date
                           "warmup_days": int(prediction_chain.warmup_days)}
    predicted, stats, failure = _reproduce(prediction_chain, raw_slice, ensemble_test_predictions,
                                           date_split, registry)
    if stats is not None:
        out["reproduction"] = stats
    if failure:
        return {**out, "registered": False, "reason": failure}

    from bma_quant.core.evaluation import promotion
    from bma_quant.run_hooks.run_identity import data_stem

    out["model_name"] = promotion.registered_model_name(
        str(registry.get("model_name_prefix", "bma_quant")), data_stem(data.get("raw_path")),
        registry.get("model_name"))
    refusal = _registration_refusal(prediction_chain, gate_report, registry)
    if refusal:
        return {**out, "registered": False, "reason": refusal}
    served = ensemble_test_predictions.loc[
        ensemble_test_predictions["model"] == prediction_chain.model_name]
    result = _log_and_register(prediction_chain, gate_report, development, date_split, data,
                               registry, raw_slice, predicted, out["model_name"],
                               promotion.predictions_fingerprint(served))
    return {**out, **result}


def reproduction_metrics(model_registration: dict) -> dict[str, dict[str, float]]:
    """The reproduction check's figures as MLflow metrics (evaluation.registry.reproduction_*),
    whenever the check ran: a chain that did not reproduce its test predictions shows by how
    much. None when the chain failed before comparing."""
    stats = model_registration.get("reproduction") or {}
    return {f"reproduction_{k}": {"value": float(v), "step": 0} for k, v in stats.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))}


def _raw_test_slice(chain: PredictionChain, date_split: dict, data: dict, registry: dict
                    ) -> pd.DataFrame:
    """The raw file's rows the reproduction check feeds the chain: its warm-up and the checked
    test dates."""
    with _warnings_said_before(DATA_LOGGERS):  # data_processing named the file's defects
        raw = panel_lib.load_configured_panel(data)
    return test_slice(raw, date_split, chain.warmup_days, registry.get("reproduction_dates"),
                      calendar=chain.cleaner.kept_dates(raw))


def _reproduce(chain: PredictionChain, raw_slice: pd.DataFrame,
               ensemble_test_predictions: pd.DataFrame, date_split: dict, registry: dict
               ) -> tuple[pd.DataFrame | None, dict | None, str | None]:
    """(the chain's predictions, the comparison's figures, why it may not be registered or None).
    A chain that fails or does not reproduce the test predictions is never registered."""
    try:
        # the slice's rows are the file's: data_processing said what reading them says
        with _warnings_said_before(DATA_LOGGERS):
            predicted, stats = reproduction_check(chain, raw_slice, ensemble_test_predictions,
                                                  date_split, chain.model_name,
                                                  registry.get("reproduction_dates"))
    except Exception as error:  # a broken chain must not be registered, but the report stays
        if interruption_in(error) is not None:
            raise
        logger.error("the prediction chain failed on the raw test slice: %s", error)
        return None, None, f"chain failed on the test slice: {type(error).__name__}: {error}"
    logger.info("chain on the raw test slice vs pipeline test predictions: %s", stats)
    mismatch = _reproduction_mismatch(stats, float(registry.get("max_reproduction_diff", 1e-4)),
                                      _cut_history_cause(chain, raw_slice, date_split))
    if mismatch:
        logger.error("the chain does not reproduce the test predictions: %s (%s): not registered",
                     mismatch, stats)
        return predicted, stats, f"chain does not reproduce the test predictions: {mismatch}"
    return predicted, stats, None


def _registration_refusal(chain: PredictionChain, gate_report: dict, registry: dict
                          ) -> str | None:
    """Why a chain that reproduces its test predictions is still not registered, or None."""
    import mlflow  # only the registry step needs MLflow

    gated = str(gate_report.get("model") or chain.model_name)
    if gated != chain.model_name:  # the champion must be judged on what it serves
        reason = (f"evaluation.gates.model is {gated!r}: the gates and the champion comparison "
                  f"judged it, but the chain serves {chain.model_name!r}; set "
                  f"evaluation.gates.model: {chain.model_name} to register the chain")
        logger.warning("not registered: %s", reason)
        return reason
    if not registry.get("enabled", True):
        return "registry.enabled is false"
    if mlflow.active_run() is None:
        logger.warning("no active MLflow run: the chain is not logged or registered")
        return "no active MLflow run"
    return None


def _log_and_register(chain: PredictionChain, gate_report: dict, development: dict | None,
                      date_split: dict, data: dict, registry: dict, raw_slice: pd.DataFrame,
                      predicted: pd.DataFrame, model_name: str,
                      served: str | None = None) -> dict[str, Any]:
    """Log the chain as a pyfunc model of the active run and register it (serving.registry)."""
    import mlflow

    from bma_quant.serving.registry import log_and_register

    n = int(registry.get("signature_rows", 200))
    run_tags = mlflow.MlflowClient().get_run(mlflow.active_run().info.run_id).data.tags
    candidate = _registry_candidate(gate_report, development or {}, date_split,
                                    run_tags.get("data_fingerprint"), served)
    return log_and_register(
        chain, gate_report, raw_slice.head(n), predicted.head(n),
        model_name=model_name, candidate=candidate, data_path=str(data["raw_path"]),
        data_fingerprint=run_tags.get("data_fingerprint"),
        artifact_name=registry.get("artifact_name", "bma_quant_chain"),
        champion_alias=registry.get("champion_alias", "champion"),
        challenger_alias=registry.get("challenger_alias", "challenger"),
        code_paths=[registry["code_path"]] if registry.get("code_path") else None,
        name_from_file=not registry.get("model_name"),
    )
