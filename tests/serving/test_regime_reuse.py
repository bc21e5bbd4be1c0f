"""The serving chain takes the training run's regimes for dates it was trained over only when the
slice's own detector evidence agrees with training's (a probe: prices of half the names changed
over 80 dates, and the stored regimes and context were served unchanged)."""

import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd

from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.regimes.regime_evidence import regime_evidence
from bma_quant.serving.chain import PredictionChain, evidence_settle_rows

PARAMS = {"trend_window": 20, "volatility_window": 20, "dispersion_window": 20,
          "breadth_window": 50, "momentum_window": 20, "reversal_window": 5,
          "low_volatility_window": 20, "factor_lag_days": 2, "performance_window": 10,
          "min_cross_section": 10}


class EvidenceOnlyDetector:
    """A regime model whose table is the real detector evidence of the prices it is given, with
    a regime read off the trend (enough to see which prices it came from)."""

    detector = True
    evidence_params = PARAMS

    def regimes_for(self, close, market):
        evidence = regime_evidence(close, market, PARAMS).reset_index()
        bull = evidence["trend"].fillna(0) > 0
        return evidence.assign(regime=np.where(bull, "bull", "bear"), p_bull=bull.astype(float),
                               p_neutral=0.0, p_bear=(~bull).astype(float))


def _market(panel):
    close = panel.pivot(index="date", columns="ticker", values="close")
    level = close.mean(axis=1)
    return pd.DataFrame({"date": level.index, "market_level": level.to_numpy(),
                         "market_return": level.pct_change().to_numpy()})


def _regimes(chain, panel):
    return PredictionChain.regimes(chain, panel, _market(panel))


def test_stored_regimes_are_served_only_for_the_prices_they_were_detected_on(caplog):
    panel = generate_synthetic_market(n_tickers=40, n_days=500, seed=8).panel[
        ["date", "ticker", "close"]]
    model = EvidenceOnlyDetector()
    trained = model.regimes_for(panel.pivot(index="date", columns="ticker", values="close"),
                                _market(panel))
    trained["regime"] = "neutral"  # what training stored: told apart from a fresh detection
    chain = SimpleNamespace(known_regimes=trained, regime_models=lambda: {"regime_x": model})
    dates = np.sort(panel["date"].unique())
    sliced = panel[panel["date"] >= dates[300]]
    with caplog.at_level(logging.WARNING):
        same = _regimes(chain, sliced)
    assert (same["regime"] == "neutral").all() and "differs" not in caplog.text
    changed = sliced.copy()
    names = changed["ticker"].isin(sorted(changed["ticker"].unique())[:20])
    late = changed["date"] >= dates[420]
    step = changed.loc[names & late, "date"].map({d: k for k, d in enumerate(dates)}) - 420
    changed.loc[names & late, "close"] *= np.exp(0.01 * step)
    with caplog.at_level(logging.WARNING):
        fresh = _regimes(chain, changed)
    assert "the slice's regime evidence differs from the training run's" in caplog.text
    assert not (fresh["regime"] == "neutral").any()  # detected from the slice, every date
    assert len(fresh) == sliced["date"].nunique()
    assert evidence_settle_rows(PARAMS) == 62


def test_closes_rounded_to_float32_are_the_same_prices(caplog):
    """A slice read from a float32 store (parquet written as float32, a database REAL column)
    carries the training prices to 7 digits: its evidence moves by ~1e-7, below any real price
    correction, and the stored regimes are still served."""
    panel = generate_synthetic_market(n_tickers=40, n_days=500, seed=8).panel[
        ["date", "ticker", "close"]]
    model = EvidenceOnlyDetector()
    trained = model.regimes_for(panel.pivot(index="date", columns="ticker", values="close"),
                                _market(panel))
    trained["regime"] = "neutral"
    chain = SimpleNamespace(known_regimes=trained, regime_models=lambda: {"regime_x": model})
    dates = np.sort(panel["date"].unique())
    rounded = panel[panel["date"] >= dates[300]].copy()
    rounded["close"] = rounded["close"].astype(np.float32).astype(np.float64)
    with caplog.at_level(logging.WARNING):
        served = _regimes(chain, rounded)
    assert "differs" not in caplog.text
    assert (served["regime"] == "neutral").all()
