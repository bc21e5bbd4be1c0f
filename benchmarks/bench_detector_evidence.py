"""Which evidence should the HMM regime detector read? (issue 12) Detector alone, development seeds.

For each generator seed (development seeds, not the regime-quality benchmark's 101-103 / 201-202)
a `REGIME_FACTOR_MARKET` panel (500 x 2520 by default) gives the detector's evidence
(`core/regimes/regime_evidence.py`, equal-weighted market); an HMM with the project's settings is
fitted on the first 80 % of dates and forward-filtered over all of them. Printed per evidence set
and factor-performance window: best-match agreement with the true regimes on the last 20 % of
dates (test) and on the fit dates after the first 300 (in-sample), per seed and on the mean.

Run: .venv/bin/python benchmarks/bench_detector_evidence.py [--seeds 11 12 13 14]
"""

from __future__ import annotations

import argparse
import logging

import _common  # noqa: F401  (project root on sys.path, telemetry off)
import numpy as np
import pandas as pd

from bma_quant.core.data.synthetic import REGIME_FACTOR_MARKET, generate_synthetic_market
from bma_quant.core.regimes.detection import detection_agreement, make_detector
from bma_quant.core.regimes.regime_evidence import regime_evidence
from tests.support import project_params

PERFORMANCE = ["perf_momentum", "perf_reversal", "perf_low_volatility"]
EVIDENCE_SETS = {
    "all seven": ["trend", "volatility", "dispersion", "breadth", *PERFORMANCE],
    "trend, volatility, performance": ["trend", "volatility", *PERFORMANCE],
    "performance only": PERFORMANCE,
}
WINDOWS = (2, 5, 10, 20)


def agreements(seed: int, n_tickers: int, n_days: int, params: dict) -> dict:
    market = generate_synthetic_market(n_tickers, n_days, seed=seed, **dict(REGIME_FACTOR_MARKET))
    close = market.panel.pivot(index="date", columns="ticker", values="close")
    daily = close.pct_change(fill_method=None).mean(axis=1).fillna(0.0)
    index = pd.DataFrame({"date": close.index, "market_return": daily.to_numpy(),
                          "market_level": (1 + daily).cumprod().to_numpy()})
    dates = close.index
    fit_end, test = dates[int(0.8 * len(dates)) - 1], dates[int(0.8 * len(dates)):]
    in_sample = dates[(dates > dates[300]) & (dates <= fit_end)]
    out = {}
    for window in WINDOWS:
        evidence = regime_evidence(close, index, {**params["evidence"],
                                                  "performance_window": window})
        for name, columns in EVIDENCE_SETS.items():
            detector = make_detector("hmm", {**params["hmm"], "columns": columns,
                                             "order_column": "trend"},
                                     int(params["smoothing"]["min_duration_days"]))
            detected = detector.fit(evidence.loc[:fit_end].dropna()).detect(evidence.fillna(0.0))
            # the label permutation is chosen on the fit dates (in-sample: scored there too)
            fitted = detected[detected["date"].isin(in_sample)]
            scores = [detection_agreement(detected[detected["date"].isin(part)],
                                          market.regimes, matched_on=fitted)["best_match_accuracy"]
                      for part in (test, in_sample)]
            out[(name, window)] = scores
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--days", type=int, default=2520)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 14])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    params = project_params()["regime_models"]
    by_seed = {seed: agreements(seed, args.tickers, args.days, params) for seed in args.seeds}
    print("| evidence | window | test agreement per seed | test mean | in-sample mean |")
    print("|---|---:|---|---:|---:|")
    for key in by_seed[args.seeds[0]]:
        scores = np.array([by_seed[seed][key] for seed in args.seeds])
        per_seed = " / ".join(f"{v:.2f}" for v in scores[:, 0])
        print(f"| {key[0]} | {key[1]} | {per_seed} | {scores[:, 0].mean():.3f} | "
              f"{scores[:, 1].mean():.3f} |", flush=True)


if __name__ == "__main__":
    main()
