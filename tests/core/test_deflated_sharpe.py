"""Deflated and probabilistic Sharpe ratios: the paper's worked example, independent checks, and
the known answer on pure noise."""

import math

import numpy as np
import pytest
from scipy import stats

from bma_quant.core.evaluation.deflated_sharpe import (
    EULER_GAMMA,
    annualise,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    per_period,
    probabilistic_sharpe_ratio,
    return_moments,
)


def test_worked_example_of_bailey_and_lopez_de_prado_2014():
    # DSR paper, numerical example: N = 100 trials, V[SR] = 1/2 (annualised), best SR = 2.5
    # (annualised) over 5 years of daily returns (T = 1250, 250 days a year), skewness -3,
    # kurtosis 10 -> SR0 = 0.1132 per day and DSR = 0.9004.
    sr0 = expected_max_sharpe(100, per_period(math.sqrt(0.5), 250) ** 2)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = probabilistic_sharpe_ratio(per_period(2.5, 250), sr0, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-4)


def test_psr_matches_an_independent_computation():
    sr, bench, n, g3, g4 = 0.08, 0.02, 500, -0.7, 6.5
    z = (sr - bench) * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    assert probabilistic_sharpe_ratio(sr, bench, n, g3, g4) == pytest.approx(stats.norm.cdf(z))
    # negative skew and fat tails widen the estimate's error: less confidence than under normality
    assert probabilistic_sharpe_ratio(sr, bench, n, g3, g4) < probabilistic_sharpe_ratio(
        sr, bench, n)


def test_expected_max_sharpe_matches_simulated_maxima():
    rng = np.random.default_rng(0)
    n_trials, variance = 100, 0.04
    maxima = rng.normal(0.0, math.sqrt(variance), size=(20_000, n_trials)).max(axis=1)
    assert expected_max_sharpe(n_trials, variance) == pytest.approx(maxima.mean(), rel=0.02)
    z = stats.norm.ppf
    by_hand = math.sqrt(variance) * ((1 - EULER_GAMMA) * z(1 - 1 / n_trials)
                                     + EULER_GAMMA * z(1 - 1 / (n_trials * math.e)))
    assert expected_max_sharpe(n_trials, variance) == pytest.approx(by_hand)
    assert expected_max_sharpe(1, variance) == 0.0
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, variance)


def test_moments_and_units():
    rng = np.random.default_rng(1)
    values = rng.standard_t(5, size=5000) * 0.01 + 0.0005
    moments = return_moments(values)
    assert moments.sharpe == pytest.approx(values.mean() / values.std(ddof=1))
    assert moments.kurtosis == pytest.approx(stats.kurtosis(values) + 3.0)
    assert moments.kurtosis > 4  # non-excess: a normal would be 3
    assert math.isnan(return_moments(np.zeros(10)).sharpe)
    assert annualise(per_period(1.5, 252), 252) == pytest.approx(1.5)


def test_pure_noise_with_many_trials_deflates_a_good_looking_best_sharpe():
    rng = np.random.default_rng(7)
    n_trials, n_days = 200, 750  # three years of daily returns, no configuration has an edge
    returns = rng.normal(0.0, 0.01, size=(n_days, n_trials))
    sharpes = returns.mean(axis=0) / returns.std(axis=0, ddof=1)
    best = returns[:, np.argmax(sharpes)]
    assert annualise(sharpes.max(), 252) > 1.5  # the winner looks good on its own
    result = deflated_sharpe_ratio(best, n_trials, float(sharpes.var(ddof=1)))
    assert result.probabilistic_sharpe > 0.95  # ... and "significant" without the search
    assert result.deflated_sharpe < 0.5  # but no better than the best of 200 noise trials
    # a real edge of the same raw size, found in a single trial, is not deflated
    single = deflated_sharpe_ratio(best, 1, 0.0)
    assert single.deflated_sharpe == pytest.approx(single.probabilistic_sharpe)
