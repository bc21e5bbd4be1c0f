"""Regime detection: causality (prefix invariance), fitted parts, smoothing, fallbacks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.data.synthetic import generate_synthetic_market
from bma_quant.core.features.fear_greed import fear_greed_index
from bma_quant.core.regimes import detection as R

RULES = {
    "trend_window": 63, "vol_window": 21, "trend_quantiles": [0.33, 0.67],
    "vol_quantiles": [0.33, 0.67], "fear_greed_quantiles": [0.33, 0.67], "use_fear_greed": True,
    "net_vote_share": 0.5,
}
MARKOV = {
    "switching_variance": True, "return_scale": 100.0, "max_iter": 200, "em_iter": 5,
    "min_state_share": 0.02, "state_order_by": "mean", "fear_greed_tvtp": False,
}
PARAMS = {"rules": RULES, "markov": MARKOV}
VOLS = {"bull": 0.006, "neutral": 0.011, "bear": 0.025}


@pytest.fixture(scope="module")
def synthetic():
    return generate_synthetic_market(30, 1500, seed=8, market_vol=VOLS,
                                     regime_stay_probability=0.99, ohlcv=False)


def _market(sm) -> pd.DataFrame:
    market = sm.market.rename(columns={"level": "market_level"})
    market["market_return"] = market["market_level"].pct_change()
    return market


def _inputs_on_prefix(sm, end: int | None) -> pd.DataFrame:
    """Detector inputs (fear-greed included) computed from the panel cut after `end` dates."""
    close = sm.panel.pivot(index="date", columns="ticker", values="close")
    market = _market(sm)
    if end is not None:
        close, market = close.iloc[:end], market.iloc[:end]
    return R.detector_inputs(market, fear_greed_index(close, market))


@pytest.fixture(scope="module")
def full_inputs(synthetic):
    return _inputs_on_prefix(synthetic, None)


def test_a_detector_is_not_fitted_on_inputs_out_of_date_order(full_inputs):
    """A label slice of unsorted rows is positional: it fitted on test dates."""
    with pytest.raises(ValueError, match="in date order"):
        R.fit_detector("rules", PARAMS, full_inputs.iloc[::-1], full_inputs.index[99], 5)


@pytest.mark.parametrize("kind", ["rules", "markov"])
def test_regimes_and_fear_greed_are_prefix_invariant(synthetic, full_inputs, kind):
    fit_end = full_inputs.index[999]
    detector = R.fit_detector(kind, PARAMS, full_inputs, fit_end, min_duration=5).detector
    assert detector.name == kind  # no silent fallback in this test
    full = detector.detect(full_inputs)
    for end in (400, 1000, 1300):  # before, at and after the end of the fit period
        prefix_inputs = _inputs_on_prefix(synthetic, end)
        pd.testing.assert_series_equal(prefix_inputs["fear_greed"],
                                       full_inputs["fear_greed"].iloc[:end])
        prefix = detector.detect(prefix_inputs)
        pd.testing.assert_series_equal(prefix["regime"], full["regime"].iloc[:end])
        np.testing.assert_allclose(prefix[list(R.PROBABILITY_COLUMNS)].to_numpy(),
                                   full[list(R.PROBABILITY_COLUMNS)].iloc[:end].to_numpy(),
                                   rtol=1e-9, atol=1e-12)
    assert full_inputs["fear_greed"].dropna().between(0, 100).all()


@pytest.mark.parametrize("kind", ["rules", "markov"])
def test_fitted_parts_use_only_dates_up_to_fit_end(full_inputs, kind):
    """Rewriting every return after the fit end leaves thresholds / Markov parameters unchanged."""
    fit_end = full_inputs.index[999]
    changed = full_inputs.copy()
    rng = np.random.default_rng(0)
    changed.loc[changed.index > fit_end, "market_return"] = rng.normal(0, 0.05, 500)
    changed.loc[changed.index > fit_end, "fear_greed"] = rng.uniform(0, 100, 500)
    a = R.fit_detector(kind, PARAMS, full_inputs, fit_end, 5).detector
    b = R.fit_detector(kind, PARAMS, changed, fit_end, 5).detector
    if kind == "rules":
        assert a.thresholds == b.thresholds
    else:
        np.testing.assert_array_equal(a.params, b.params)
    # ... and labels up to the fit end do not depend on later data either.
    pd.testing.assert_frame_equal(a.detect(full_inputs).iloc[:1000],
                                  b.detect(changed).iloc[:1000])


def test_markov_states_are_named_by_mean_and_use_filtered_probabilities(synthetic, full_inputs):
    detector = R.fit_detector("markov", PARAMS, full_inputs, full_inputs.index[-1], 1).detector
    assert detector.converged
    assert detector.state_means[0] > detector.state_means[1] > detector.state_means[2]
    out = detector.detect(full_inputs)
    probabilities = out[list(R.PROBABILITY_COLUMNS)].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    # min_duration=1: the regime is the argmax of the filtered probabilities.
    assert (out["regime"].to_numpy() == np.array(R.REGIMES)[probabilities.argmax(axis=1)]).all()
    # The calm/volatile structure of the synthetic chain is recovered far above chance (1/3).
    by_vol = R.fit_detector("markov", {**PARAMS, "markov": {**MARKOV, "state_order_by":
                                                             "volatility"}},
                            full_inputs, full_inputs.index[-1], 5).detector
    assert by_vol.state_vols[0] < by_vol.state_vols[1] < by_vol.state_vols[2]
    assert R.detection_accuracy(by_vol.detect(full_inputs), synthetic.regimes) > 0.6


def test_markov_failure_falls_back_to_rules(full_inputs):
    params = {**PARAMS, "markov": {**MARKOV, "max_iter": 1, "em_iter": 0}}
    fit = R.fit_detector("markov", params, full_inputs, full_inputs.index[999], 5)
    assert fit.fallback and fit.requested == "markov"
    assert isinstance(fit.detector, R.RulesDetector)
    assert "converge" in fit.error
    degenerate = {**PARAMS, "markov": {**MARKOV, "min_state_share": 0.5}}
    fit = R.fit_detector("markov", degenerate, full_inputs, full_inputs.index[999], 5)
    assert fit.fallback and "degenerate" in fit.error


def test_rules_votes_against_development_quantiles(full_inputs):
    detector = R.fit_detector("rules", PARAMS, full_inputs, full_inputs.index[999], 1).detector
    assert set(detector.thresholds) == {"trend", "vol", "fear_greed"}
    assert detector.vote_threshold == 2  # 2 of 3 indicators
    out = detector.detect(full_inputs)
    votes = detector.votes(full_inputs).to_numpy()
    regime = out["regime"].to_numpy()
    assert (regime[votes >= 2] == "bull").all() and (regime[votes <= -2] == "bear").all()
    assert (regime[np.abs(votes) < 2] == "neutral").all()
    # Without fear-greed: two indicators, one net vote decides.
    no_fg = R.fit_detector("rules", {**PARAMS, "rules": {**RULES, "use_fear_greed": False}},
                           full_inputs, full_inputs.index[999], 1).detector
    assert no_fg.vote_threshold == 1 and set(no_fg.thresholds) == {"trend", "vol"}


def test_min_duration_smoothing_is_causal():
    raw = np.array([0, 0, 0, 2, 2, 0, 0, 2, 2, 2, 2, 1, 1, 1])
    smoothed = R.smooth_min_duration(raw, 3)
    np.testing.assert_array_equal(smoothed, [0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 1])
    for end in range(1, raw.size + 1):  # prefix invariance
        np.testing.assert_array_equal(R.smooth_min_duration(raw[:end], 3), smoothed[:end])
    np.testing.assert_array_equal(R.smooth_min_duration(raw, 1), raw)
    # a first raw run too short to confirm holds the starting state, not the raw flicker
    np.testing.assert_array_equal(R.smooth_min_duration(np.array([2, 0, 0, 0, 1]), 3),
                                  [2, 2, 2, 0, 0])


def test_longer_min_duration_never_adds_switches():
    """Sweeping the minimum must not jump back to the raw labels once it exceeds every raw run
    (it did: 534 switches at 252 days against 5 at 63)."""
    raw = np.random.default_rng(0).choice(3, size=2000, p=[0.6, 0.25, 0.15])
    raw = np.repeat(raw, np.random.default_rng(1).integers(1, 40, size=raw.size))[:5000]
    runs = np.diff(np.flatnonzero(np.r_[True, raw[1:] != raw[:-1], True]))
    switches = [int((np.diff(R.smooth_min_duration(raw, d)) != 0).sum())
                for d in (1, 2, 5, 21, 40, 63, runs.max(), runs.max() + 1, 10_000)]
    assert switches == sorted(switches, reverse=True) and switches[0] > switches[3] > 0
    assert switches[-3] > 0 and switches[-2] == switches[-1] == 0  # beyond every run: no switch


def test_regime_stats():
    table = pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=10),
                          "regime": ["bull"] * 4 + ["bear"] * 2 + ["bull"] * 4})
    stats = R.regime_stats(table)
    assert stats["share_bull"] == 0.8 and stats["share_bear"] == 0.2
    assert stats["share_neutral"] == 0.0
    assert stats["switches"] == 2 and stats["mean_duration_days"] == pytest.approx(10 / 3)


HMM = {"columns": ["trend", "volatility", "dispersion", "breadth", "perf_momentum",
                   "perf_reversal", "perf_low_volatility", "fear_greed"],
       "order_column": "trend", "n_iter": 15, "covariance_floor": 0.05, "stay_prior": 0.95,
       "min_state_share": 0.02, "seed": 0}


def _evidence_inputs(sm, end: int | None) -> pd.DataFrame:
    from bma_quant.core.regimes.regime_evidence import regime_evidence

    close = sm.panel.pivot(index="date", columns="ticker", values="close")
    market = _market(sm)
    if end is not None:
        close, market = close.iloc[:end], market.iloc[:end]
    return R.detector_inputs(market, fear_greed_index(close, market),
                             regime_evidence(close, market, {}))


def test_evidence_and_hmm_regimes_are_prefix_invariant_and_fitted_on_fit_dates_only(synthetic):
    full = _evidence_inputs(synthetic, None)
    fit_end = full.index[700]
    detector = R.make_detector("hmm", HMM, 5).fit(full.loc[:fit_end])
    everything = detector.detect(full)
    for end in (800, 1100):
        prefix = _evidence_inputs(synthetic, end)
        pd.testing.assert_frame_equal(prefix, full.iloc[:end], check_freq=False)
        pd.testing.assert_frame_equal(detector.detect(prefix), everything.iloc[:end])
    # Changing every date after fit_end leaves the fitted parameters unchanged.
    perturbed = full.copy()
    perturbed.loc[perturbed.index > fit_end, HMM["columns"]] *= 3.0
    again = R.make_detector("hmm", HMM, 5).fit(perturbed.loc[:fit_end])
    np.testing.assert_array_equal(again.model.means, detector.model.means)
    np.testing.assert_array_equal(again.model.transition, detector.model.transition)


def test_hmm_filter_never_reads_later_rows():
    """Mutation guard: a smoothed (forward-backward) posterior would change earlier rows."""
    from bma_quant.core.regimes.gaussian_hmm import filter_probabilities, fit_gaussian_hmm

    rng = np.random.default_rng(0)
    states = np.repeat([0, 1, 2, 0], 150)
    x = rng.normal(np.array([-2.0, 0.0, 2.0])[states][:, None], 1.0, (600, 2))
    model = fit_gaussian_hmm(x, 3, n_iter=20)
    full = filter_probabilities(model, x)
    changed = x.copy()
    changed[400:] = 50.0
    np.testing.assert_allclose(filter_probabilities(model, changed)[:400], full[:400])
    # The filter recovers the planted states (up to naming).
    order = np.argsort(model.means[:, 0])
    assert np.mean(order[full.argmax(axis=1)] == states) > 0.9 or np.mean(
        np.argsort(order)[full.argmax(axis=1)] == states) > 0.9


def test_detection_agreement_known_answers():
    dates = pd.bdate_range("2020-01-01", periods=6)
    truth = pd.DataFrame({"date": dates, "regime": ["bull", "bull", "neutral", "bear", "bear",
                                                    "bear"]})
    swapped = {"bull": "bear", "bear": "bull", "neutral": "neutral"}
    detected = truth.assign(regime=truth["regime"].map(swapped))
    for column, regime in zip(R.PROBABILITY_COLUMNS, R.REGIMES, strict=True):
        detected[column] = (truth["regime"] == regime).astype(float) * 0.5 + 0.5 / 3
    out = R.detection_agreement(detected, truth)
    assert out["accuracy"] == pytest.approx(1 / 6)  # only the neutral day has the same name
    assert out["best_match_accuracy"] == 1.0
    assert out["probability"] == pytest.approx(0.5 + 0.5 / 3)
    # probabilities that follow the detector's own names (as a detector's do): under them the
    # true regime gets little, under the matched names what the detector gives its state (a
    # Markov detector's 0.17 raw was 0.91 matched, and only the raw figure was logged)
    own = detected.copy()
    for column, regime in zip(R.PROBABILITY_COLUMNS, R.REGIMES, strict=True):
        own[column] = (detected["regime"] == regime).astype(float) * 0.5 + 0.5 / 3
    matched = R.detection_agreement(own, truth)
    assert matched["probability"] == pytest.approx((0.5 + 0.5 / 3 + 5 * 0.5 / 3) / 6)
    assert matched["best_match_probability"] == pytest.approx(0.5 + 0.5 / 3)
    with pytest.raises(ValueError, match="share no date"):
        R.detection_agreement(detected.assign(date=dates + pd.Timedelta(days=100)), truth)


def test_the_label_match_is_chosen_on_other_dates_than_those_it_scores():
    dates = pd.bdate_range("2020-01-01", periods=6)
    truth = pd.DataFrame({"date": dates, "regime": ["bull", "neutral", "bear"] * 2})
    # development dates name bull "bear" and bear "bull"; the scored dates use the true names
    earlier = truth.iloc[:3].assign(regime=["bear", "neutral", "bull"])
    scored = truth.iloc[3:]
    assert R.best_label_match(earlier, truth) == {"bull": "bear", "neutral": "neutral",
                                                  "bear": "bull"}
    held_out = R.detection_agreement(scored, truth, matched_on=earlier)
    assert held_out["accuracy"] == 1.0 and held_out["best_match_accuracy"] == pytest.approx(1 / 3)
    assert R.detection_agreement(scored, truth)["best_match_accuracy"] == 1.0  # in-sample pick
    # a detector that knows nothing: the in-sample maximum over six permutations beats chance,
    # the permutation chosen on earlier dates does not (on average)
    rng = np.random.default_rng(0)
    held, picked = [], []
    for _ in range(40):
        days = pd.bdate_range("2020-01-01", periods=400)
        true = pd.DataFrame({"date": days, "regime": rng.choice(R.REGIMES, 400)})
        noise = true.assign(regime=rng.choice(R.REGIMES, 400))
        first, second = noise.iloc[:200], noise.iloc[200:]
        held.append(R.detection_agreement(second, true, matched_on=first)["best_match_accuracy"])
        picked.append(R.detection_agreement(second, true)["best_match_accuracy"])
    assert abs(np.mean(held) - 1 / 3) < 0.02 < np.mean(picked) - 1 / 3


def test_hmm_states_can_be_named_by_a_column_it_does_not_model():
    # Detected from one evidence column, named by another: the state whose dates have the
    # highest mean of `trend` is bull, the lowest bear, whatever the HMM's internal numbering.
    rng = np.random.default_rng(3)
    states = np.repeat([2, 0, 1, 0, 2, 1], 120)  # 0 bull, 1 neutral, 2 bear
    dates = pd.bdate_range("2015-01-01", periods=states.size, name="date")
    # perf_momentum is highest in neutral: naming by it would call neutral bull
    inputs = pd.DataFrame({"perf_momentum": rng.normal(np.array([0.0, 3.0, -3.0])[states], 0.5),
                           "trend": rng.normal(np.array([1.0, 0.0, -1.0])[states], 0.3)},
                          index=dates)
    params = {**HMM, "columns": ["perf_momentum"], "order_column": "trend"}
    detected = R.make_detector("hmm", params, 1).fit(inputs).detect(inputs)
    truth = np.array(R.REGIMES)[states]
    assert np.mean(detected["regime"].to_numpy() == truth) > 0.95
    with pytest.raises(ValueError, match="order_column 'nothing'"):
        R.make_detector("hmm", {**params, "order_column": "nothing"}, 1).fit(inputs)


def test_factor_performance_by_hand():
    """perf_momentum at t: the sum over the last `performance_window` dates s of the mean over
    names of (momentum score at s - factor_lag_days) x (log return at s): a factor portfolio
    formed on scores known factor_lag_days before the return it earns."""
    from bma_quant.core.regimes.regime_evidence import EvidenceParams, factor_performance

    rng = np.random.default_rng(8)
    r = pd.DataFrame(rng.normal(0, 0.02, (14, 3)), columns=list("ABC"),
                     index=pd.bdate_range("2021-01-04", periods=14))
    params = EvidenceParams(momentum_window=2, reversal_window=2, low_volatility_window=2,
                            factor_lag_days=2, performance_window=3, min_cross_section=2)
    out = factor_performance(r, params)
    values = r.to_numpy()

    def score(s):  # 2-day momentum standardised across the names at date s
        m = values[s - 1] + values[s]
        return (m - m.mean()) / m.std(ddof=1)

    t = 13
    expected = sum(np.mean(score(s - 2) * values[s]) for s in (t - 2, t - 1, t))
    assert out["perf_momentum"].iloc[t] == pytest.approx(expected)
    # a score from row 1 (2 returns), lagged 2 -> a daily return from row 3, 3 of them: row 5
    assert np.isnan(out["perf_momentum"].iloc[4]) and np.isfinite(out["perf_momentum"].iloc[5])


def test_cross_sectional_evidence_needs_min_names():
    """A universe that starts with a few listings: a factor portfolio of two names is noise
    several times the full universe's, and an HMM fitted on such dates spent its states on it
    (every later date one regime). Dispersion, breadth and perf_* are missing on dates with
    fewer than `min_cross_section` names with a return; the index's trend and volatility stay."""
    from bma_quant.core.regimes.regime_evidence import regime_evidence

    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2020-01-01", periods=200)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.02, (200, 12)), axis=0)),
                         index=dates, columns=[f"N{k}" for k in range(12)])
    close.iloc[:100, 4:] = np.nan  # 4 names for 100 dates, then 12
    market = pd.DataFrame({"date": dates, "market_return": rng.normal(0, 0.01, 200)})
    market["market_level"] = np.cumprod(1 + market["market_return"])
    params = {"trend_window": 5, "volatility_window": 5, "dispersion_window": 5,
              "breadth_window": 5, "momentum_window": 5, "reversal_window": 2,
              "low_volatility_window": 5, "factor_lag_days": 1, "performance_window": 5}
    thin = regime_evidence(close, market, {**params, "min_cross_section": 10})
    cross = ["dispersion", "breadth", "perf_momentum", "perf_reversal", "perf_low_volatility"]
    assert thin.iloc[:100][cross].isna().all().all()
    assert thin.iloc[20:100][["trend", "volatility"]].notna().all().all()
    assert thin.iloc[130:][cross].notna().all().all()
    loose = regime_evidence(close, market, {**params, "min_cross_section": 2})
    assert loose.iloc[20:100][cross].notna().all().all()
    pd.testing.assert_frame_equal(thin.iloc[130:], loose.iloc[130:])
    # without the key (a chain pickled before it): the former floors, the thin dates kept
    former = regime_evidence(close, market, params)
    assert former.iloc[20:100][cross].notna().all().all()
    pd.testing.assert_frame_equal(former, loose)


def test_a_universe_below_the_evidence_floor_is_warned_about(caplog):
    from bma_quant.core.regimes.regime_evidence import regime_evidence

    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2020-01-01", periods=120)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.02, (120, 6)), axis=0)),
                         index=dates, columns=[f"N{k}" for k in range(6)])
    market = pd.DataFrame({"date": dates, "market_return": rng.normal(0, 0.01, 120)})
    market["market_level"] = np.cumprod(1 + market["market_return"])
    with caplog.at_level("WARNING"):
        out = regime_evidence(close, market, {"min_cross_section": 10})
    assert out["perf_momentum"].isna().all() and out["dispersion"].isna().all()
    assert "at most 6 name(s) have a return on any date, fewer than min_cross_section (10)" \
        in caplog.text and "regime_models.evidence.min_cross_section" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        regime_evidence(close, market, {"min_cross_section": 6})
    assert "min_cross_section" not in caplog.text


def test_regimes_whose_market_moved_against_their_names_are_named():
    from bma_quant.core.regimes.detection import misnamed_regimes, regime_market_returns

    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=600)
    regimes = pd.DataFrame({"date": dates, "regime": np.repeat(["bull", "neutral", "bear"], 200)})
    drift = np.repeat([0.001, 0.0, 0.003], 200)  # the "bear" dates rose most
    inputs = pd.DataFrame({"market_return": drift + 0.01 * rng.standard_normal(600)},
                          index=dates)
    returns = regime_market_returns(regimes, inputs)
    assert returns["bear"]["n_dates"] == 200
    assert returns["bear"]["mean"] == pytest.approx(
        inputs["market_return"].iloc[400:].mean())
    assert returns["bear"]["tstat"] > 3
    assert misnamed_regimes(returns, 2.0) == ["bear"]
    assert misnamed_regimes(returns, 10.0) == []  # within what the bar calls noise
    falling = {"bull": {"mean": -0.002, "tstat": -2.5}, "bear": {"mean": 0.001, "tstat": 2.1}}
    assert misnamed_regimes(falling, 2.0) == ["bull", "bear"]
    no_bear = regime_market_returns(regimes[regimes["regime"] != "bear"], inputs)
    assert np.isnan(no_bear["bear"]["mean"]) and misnamed_regimes(no_bear, 2.0) == []


def test_the_hmms_convergence_and_restarts_are_its_parameters(synthetic):
    """regime_models.hmm.tol and kmeans_inits reach the EM fit (they were literals): a loose
    tolerance stops EM after its second iteration, and the restarts change the initial states
    the EM climbs from."""
    from bma_quant.core.regimes import gaussian_hmm

    inputs = _evidence_inputs(synthetic, None).iloc[:700]
    default = R.make_detector("hmm", HMM, 5).fit(inputs)
    loose = R.make_detector("hmm", {**HMM, "tol": 1.0}, 5).fit(inputs)
    assert loose.model.n_iter == 2 < default.model.n_iter
    seen = []
    real = gaussian_hmm.KMeans

    def spy(*args, **kwargs):
        seen.append(kwargs["n_init"])
        return real(*args, **kwargs)

    gaussian_hmm.KMeans = spy
    try:
        R.make_detector("hmm", {**HMM, "kmeans_inits": 9}, 5).fit(inputs)
    finally:
        gaussian_hmm.KMeans = real
    assert seen == [9]


def test_breadth_counts_a_close_at_its_mean_alike_in_any_units_and_history():
    """On tick prices a close can equal its 50-day mean exactly; `close > mean` then read the
    rolling sum's last bits, which move with the units and the history's first date (serving's
    slice reported its own training file's breadth as "other or corrected prices")."""
    from bma_quant.core.regimes.regime_evidence import regime_evidence

    rng = np.random.default_rng(2)
    dates = pd.bdate_range("2020-01-01", periods=400)
    ticks = np.cumsum(rng.integers(-1, 2, (400, 30)), axis=0) + rng.integers(200, 400, 30)
    market = pd.DataFrame({"date": dates, "market_return": rng.normal(0, 0.01, 400)})

    def breadth(units, start=0):
        close = pd.DataFrame(ticks[start:] * units, index=dates[start:])
        return regime_evidence(close, market.iloc[start:], {})["breadth"]

    cents, dollars = breadth(1.0), breadth(0.0001)
    pd.testing.assert_series_equal(cents, dollars)
    later = breadth(0.0001, start=137).iloc[60:]  # past the slice's own 50-day warm-up
    assert later.notna().all()
    pd.testing.assert_series_equal(later, dollars.iloc[197:])


def test_an_evidence_column_without_values_is_dropped_in_the_runs_words_only(caplog):
    """A small universe leaves perf_* without a value on every fit date: the column is dropped
    with the detector's warning, and numpy's RuntimeWarnings ("Degrees of freedom <= 0 for
    slice", "Mean of empty slice") no longer reach the console once per fold."""
    import warnings

    rng = np.random.default_rng(3)
    states = np.repeat([2, 0, 1, 0, 2, 1], 120)
    dates = pd.bdate_range("2015-01-01", periods=states.size, name="date")
    inputs = pd.DataFrame({"trend": rng.normal(np.array([1.0, 0.0, -1.0])[states], 0.3),
                           "perf_momentum": np.nan}, index=dates)
    params = {**HMM, "columns": ["trend", "perf_momentum"], "order_column": "trend"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level("WARNING"):
            R.make_detector("hmm", params, 1).fit(inputs)
    assert "evidence ['perf_momentum'] has no spread on the fit dates; dropped" in caplog.text
