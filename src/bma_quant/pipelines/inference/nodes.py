"""inference nodes: load the trained chain, read the panel it was trained on (or the one named in
params), score the last date, and turn the scores into target portfolio weights."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from bma_quant.core.data import cleaning
from bma_quant.core.data import panel as panel_lib
from bma_quant.core.evaluation.portfolio import SECTOR, PortfolioRule, target_weights
from bma_quant.pipelines.mlflow_format import as_mlflow_metrics
from bma_quant.serving.chain import MARKET_LEVEL, ChainInputError
from bma_quant.serving.model_source import InferenceModel, ModelSourceError, load_inference_model

logger = logging.getLogger(__name__)

DATA_KEYS = panel_lib.READ_KEYS


def load_model(inference: dict) -> InferenceModel:
    """The local chain or the registered model (``inference.model_source``)."""
    PortfolioRule.from_params(inference["portfolio"])  # refuse a bad rule before loading
    model = load_inference_model(inference)
    logger.info("inference model: %s version %s (%s)", model.card["model_name"],
                model.card["model_version"], model.card["model_source"])
    return model


def inference_data_source(model: InferenceModel, inference: dict) -> dict:
    """raw_path / index_path / layout: the trained chain's own, each overridden by
    ``inference.data`` when set there (``params:data`` names the shipped sample, not what the
    chain was trained on, so it is never read here)."""
    trained = getattr(model.chain, "training_data", None) or {}
    # an empty value (`--params "inference.data.raw_path="`) is unset, as null is
    source = {**trained,
              **{k: v for k, v in (inference.get("data") or {}).items()
                 if k in DATA_KEYS and v not in (None, "")}}
    if not source.get("raw_path"):
        raise ModelSourceError(
            f"{model.card['model_name']} version {model.card['model_version']} does not record "
            "the panel it was trained on (a chain pickled by an older version): set "
            "inference.data.raw_path (and inference.data.index_path, and layout, delimiter or "
            "decimal where the file needs them) to the panel to score")
    given = {k for k, v in (inference.get("data") or {}).items() if v not in (None, "")}
    for key in ("raw_path", "index_path"):
        if source.get(key) and key not in given and not Path(str(source[key])).exists():
            # "Input file not found" named a path the user never gave
            raise ModelSourceError(
                f"the file the chain was trained on, {key} {source[key]} (recorded in "
                f"{model.card['model_name']} version {model.card['model_version']}), is not "
                f"there any more: set inference.data.{key} to the file to score")
    return source


def describe_served(model: InferenceModel, inference: dict) -> dict:
    """What an inference run scores with, for its MLflow params (``served.*``) and
    data/08_reporting/inference_served.json: the model and version, the run that trained it,
    the label its scores rank and the panel read (the conf's ``data`` keys name the shipped
    sample, not this)."""
    chain = model.chain
    source = inference_data_source(model, inference)
    return {
        **{key: model.card.get(key) for key in ("model_source", "model_name", "model_version",
                                                "model_uri")},
        "training_run_id": getattr(chain, "training_run_id", None),
        "models_run_id": getattr(chain, "models_run_id", None),
        "label_target": getattr(chain, "label_target", None),
        "training_data_end": getattr(chain, "data_end", None),
        "data_path": source.get("raw_path"),
        "index_path": source.get("index_path"),
    }


SOURCE_PATH = "source_path"  # the inference panel's attrs key naming the file it was read from


def load_latest_panel(model: InferenceModel, inference: dict) -> pd.DataFrame:
    """The raw panel (validated like data_processing's input), its last ``history_days`` dates
    (null = all), with the index level as a ``market_level`` column when an index is given."""
    source = inference_data_source(model, inference)
    logger.info("inference data: %s (index: %s)", source["raw_path"], source.get("index_path"))
    raw = panel_lib.load_configured_panel(source)
    history = inference.get("history_days")
    warmup = int(getattr(getattr(model, "chain", None), "warmup_days", 0) or 0)
    if history and int(history) <= warmup:  # the chain would refuse it without naming why
        raise ChainInputError(
            f"inference.history_days ({history}) keeps too few dates: the chain needs "
            f"{warmup} trading dates of warm-up before the date it scores (its warmup_days), so "
            f"set at least {warmup + 1}, or null for every date of the file")
    if history:
        dates = np.sort(raw["date"].unique())
        raw = raw.loc[raw["date"] >= dates[max(0, len(dates) - int(history))]]
    index = panel_lib.load_configured_index(source)
    # as in training: an index that stops before the panel would give later dates no market move
    panel_lib.check_index_coverage(
        raw, index, source.get("index_path"),
        fix="give inference.data.index_path an index that reaches the scored date (the chain "
            "reads the market series it was trained with)")
    if len(index):
        levels = index.set_index("date")["level"]
        calendar = pd.DatetimeIndex(np.sort(raw["date"].unique()))
        levels = levels.reindex(calendar.union(levels.index)).ffill().reindex(calendar)
        raw = raw.assign(**{MARKET_LEVEL: levels.reindex(raw["date"]).to_numpy()})
    logger.info("inference panel: %d rows, %d tickers, %s..%s", len(raw), raw["ticker"].nunique(),
                raw["date"].min().date(), raw["date"].max().date())
    raw = raw.reset_index(drop=True)
    # what the run scored, for its data tags (a registry model names its data only once loaded)
    raw.attrs[SOURCE_PATH] = str(source["raw_path"])
    return raw


def _latest_sectors(raw: pd.DataFrame) -> pd.Series | None:
    if SECTOR not in raw or raw[SECTOR].notna().sum() == 0:
        return None
    known = raw.dropna(subset=[SECTOR]).sort_values("date", kind="stable")
    return known.groupby(known["ticker"].astype(str))[SECTOR].last()


def _warn_stale(scored: pd.Timestamp, data_end: str | None, stale_after_days) -> None:
    """Say when the scored date lies long after the training data ended: the models have not
    seen the market since."""
    if data_end is None or stale_after_days is None:
        return
    gap = (pd.Timestamp(scored) - pd.Timestamp(data_end)).days
    if gap > int(stale_after_days):
        logger.warning("scoring %s, %d days after the chain's training data ended (%s): its "
                       "models have not seen the market since; retrain on the newer file "
                       "(`kedro run --params data.raw_path=...`). inference.stale_after_days: %s",
                       pd.Timestamp(scored).date(), gap, data_end, stale_after_days)


def portfolio_rule(inference: dict, chain) -> PortfolioRule:
    """``inference.portfolio`` with ``n_quantiles`` null taking the quantiles the chain's
    evaluation backtest traded (5 for chains pickled before they were stored); a different
    value set there is served as asked, with a warning that the backtest's figures describe
    another book."""
    params = inference["portfolio"]
    scored = getattr(chain, "backtest_quantiles", None)
    rule = PortfolioRule.from_params(params, default_quantiles=scored or 5)
    if scored is not None and params.get("n_quantiles") is not None \
            and rule.n_quantiles != scored:
        logger.warning(
            "inference.portfolio.n_quantiles is %d but the chain's test period was backtested "
            "with evaluation.backtest.n_quantiles %d: the served book holds other names than the "
            "one whose Sharpe and returns the evaluation run reported; null serves that book",
            rule.n_quantiles, scored)
    return rule


def _warn_unsectored_neutral(scores: pd.DataFrame, rule: PortfolioRule) -> None:
    """sector_neutral asks for quantiles within sectors; without a sector column the book is
    the universe-wide one, which should be said, not silently served."""
    if rule.sector_neutral and not (SECTOR in scores and scores[SECTOR].notna().any()):
        logger.warning("inference.portfolio.sector_neutral is true but the panel has no sector "
                       "column (or no sector on the scored date): the book takes quantiles over "
                       "the whole universe and is not sector-neutral")


def _warn_thin_book(scores: pd.DataFrame, rule: PortfolioRule) -> None:
    """Fewer scored names than quantiles: each side is one name or none, a book the evaluation
    backtest (which leaves dates this thin out) never traded."""
    names = scores["ticker"].nunique()
    if names < rule.n_quantiles:
        logger.warning("only %d name(s) are scored on %s, fewer than n_quantiles (%d): each side "
                       "of the book is one name or none, a book the evaluation backtest never "
                       "traded", names, pd.Timestamp(scores["date"].max()).date(),
                       rule.n_quantiles)


def _warn_shortfall(book: pd.DataFrame, rule: PortfolioRule, summary: dict) -> None:
    """Say why the book holds less than its gross target: sectors too small for per-sector
    quantiles (sector_neutral: those whose names all hold nothing in `book`), or the per-name
    cap."""
    small = []
    if rule.sector_neutral and SECTOR in book and book[SECTOR].notna().any():
        held = book["weight"].abs().gt(0).groupby(book[SECTOR]).any()
        small = sorted(map(str, held.index[~held]))
    if small:
        logger.warning(
            "the portfolio holds gross %.3f of the %.3f target: with sector_neutral, quantiles are "
            "taken within each sector, and %d sector(s) too small for %d quantiles hold nothing "
            "(%s); set inference.portfolio.sector_neutral: false or fewer quantiles",
            summary["gross"], rule.gross_exposure, len(small), rule.n_quantiles,
            ", ".join(small[:5]))
    elif rule.max_weight is None or rule.max_weight >= rule.gross_exposure:  # no cap binds
        logger.warning("the portfolio holds gross %.3f of the %.3f target: %d scored name(s) "
                       "cannot fill its side(s)", summary["gross"], rule.gross_exposure,
                       book["ticker"].nunique())
    else:
        logger.warning("the portfolio holds gross %.3f of the %.3f target: max_weight %.3f binds "
                       "on too few names", summary["gross"], rule.gross_exposure, rule.max_weight)


def _warn_widened(book: pd.DataFrame, rule: PortfolioRule) -> None:
    """Say when max_weight made a side hold names beyond its extreme quantile: the book then
    differs from the quantile book the evaluation backtest (and its Sharpe) describes (with
    sector_neutral it differs anyway, as documented)."""
    if rule.sector_neutral and SECTOR in book and book[SECTOR].notna().any():
        return
    quantile = book["quantile"].astype("Float64")
    beyond_long = int(((book["weight"] > 0) & (quantile != rule.n_quantiles)).sum())
    beyond_short = int(((book["weight"] < 0) & (quantile != 1)).sum())
    if not beyond_long + beyond_short:
        return
    per_quantile = max(1, int((quantile == rule.n_quantiles).sum()))
    sides = 2 if rule.style == "long_short" else 1
    logger.warning(
        "inference.portfolio.max_weight (%g) is below what the top quantile's %d name(s) must hold "
        "(%g each), so the book also holds %d name(s) beyond its extreme quantiles: it is not the "
        "quantile book the evaluation backtest scored; max_weight: %g or more holds that book",
        rule.max_weight, per_quantile, rule.gross_exposure / sides / per_quantile,
        beyond_long + beyond_short, rule.gross_exposure / sides / per_quantile)


def _warn_splits(raw: pd.DataFrame, cleaner, warmup_days: int | None = None) -> None:
    """The scoring slice's suspected splits and near-split moves within the history the last
    date's features read (the chain's warm-up), said as data_processing says them on the
    training file (the chain repairs the same ones, with the training settings)."""
    if cleaner is None or not hasattr(cleaner, "split_findings"):
        return
    events, near, unexplained = cleaner.split_findings(raw)
    dates = np.sort(raw["date"].unique())
    since = pd.Timestamp(dates[max(0, len(dates) - 1 - int(warmup_days))]) if (
        warmup_days is not None and len(dates)) else None

    def read(found: list[dict]) -> list[dict]:
        return [f for f in found if since is None or pd.Timestamp(f["date"]) >= since]

    near, unexplained = read(near), read(unexplained)
    as_dicts = read([asdict(e) for e in events])
    for text in cleaning.split_warnings([e for e in as_dicts if e["status"] == "repaired"],
                                        [e for e in as_dicts if e["status"] == "pending"], near,
                                        unexplained,
                                        [e for e in as_dicts if e["status"] == "in session"],
                                        market=[e for e in as_dicts
                                                if e["status"] == "market move"]):
        logger.warning("inference panel: %s", text)


def predict_latest(raw: pd.DataFrame, model: InferenceModel, inference: dict
                   ) -> tuple[pd.DataFrame, dict]:
    """Per name on the last date: score, rank (1 = best), quantile (n_quantiles = best), target
    weight under ``inference.portfolio``, sector (when the panel has one), model name and
    version."""
    _warn_splits(raw, getattr(model.chain, "cleaner", None),
                 getattr(model.chain, "warmup_days", None))
    scores = model.predict_last_date(raw)[["date", "ticker", "prediction"]]
    scores = scores.rename(columns={"prediction": "score"})
    scores["ticker"] = scores["ticker"].astype(str)
    # names with a close but no score are named by the chain itself (serving.unscored), as for
    # a served request
    _warn_stale(scores["date"].max(), getattr(model.chain, "data_end", None),
                inference.get("stale_after_days"))
    sectors = _latest_sectors(raw)
    if sectors is not None:
        scores[SECTOR] = scores["ticker"].map(sectors)
    rule = portfolio_rule(inference, model.chain)
    _warn_unsectored_neutral(scores, rule)
    _warn_thin_book(scores, rule)
    out, book = target_weights(scores, rule)
    if book["shortfall"] > 1e-9:
        _warn_shortfall(out, rule, book)
    _warn_widened(out, rule)
    out["score"] = out["score"].astype(np.float32)
    out["rank"] = out["score"].rank(ascending=False, method="first").astype("int32")
    out["model_name"] = model.card["model_name"]
    out["model_version"] = model.card["model_version"]
    columns = ["date", "ticker", "score", "rank", "quantile", "weight",
               *([SECTOR] if sectors is not None else []), "model_name", "model_version"]
    out = out.sort_values("rank").reset_index(drop=True)[columns]
    logger.info("predictions for %s: %d names; long: %s; short: %s", out["date"].iloc[0].date(),
                len(out), ", ".join(out.loc[out["weight"] > 0, "ticker"].head(5)),
                ", ".join(out.loc[out["weight"] < 0, "ticker"].tail(5)))
    metrics = {"names": len(out), "prediction_std": float(out["score"].std()),
               **{f"portfolio_{k}": book[k] for k in ("gross", "net", "n_long", "n_short",
                                                      "shortfall")}}
    return out, as_mlflow_metrics(metrics)
