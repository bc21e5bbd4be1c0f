"""Probabilistic and deflated Sharpe ratios (Bailey & López de Prado 2012, 2014).

A Sharpe ratio estimated on T returns is noisy, more so when the returns are skewed or fat-tailed,
and the best of N tried configurations is biased upwards even when none has an edge.

- Probabilistic Sharpe ratio: PSR(SR*) = Phi( (SR - SR*) sqrt(T - 1) /
  sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) ), the probability that the true Sharpe exceeds SR*, with
  g3 the skewness and g4 the (non-excess) kurtosis of the returns.
- Expected maximum Sharpe of N independent trials with true Sharpe 0 and cross-trial variance
  V[SR]: SR0 = sqrt(V[SR]) ((1 - gamma) Z^-1(1 - 1/N) + gamma Z^-1(1 - 1/(N e))), gamma the
  Euler-Mascheroni constant, Z^-1 the standard normal quantile.
- Deflated Sharpe ratio: DSR = PSR(SR0), the probability that the true Sharpe is above what the
  search alone would have produced.

Every Sharpe ratio here is per period (not annualised): the formulas are in the units of one
observation. ``annualise``/``per_period`` convert for display.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

EULER_GAMMA = float(np.euler_gamma)


def per_period(sharpe: float, periods_per_year: int) -> float:
    """An annualised Sharpe ratio in per-period units."""
    return sharpe / math.sqrt(periods_per_year)


def annualise(sharpe: float, periods_per_year: int) -> float:
    """A per-period Sharpe ratio in annualised units."""
    return sharpe * math.sqrt(periods_per_year)


@dataclass(frozen=True)
class ReturnMoments:
    """Per-period Sharpe, skewness, non-excess kurtosis (3 for a normal) and count of returns."""

    sharpe: float
    skewness: float
    kurtosis: float
    n_obs: int


def return_moments(returns) -> ReturnMoments:
    """Moments of the finite values of a return series (NaN moments below 3 values or when
    the returns are constant)."""
    values = np.asarray(returns, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = int(values.size)
    std = values.std(ddof=1) if n > 1 else 0.0
    if n < 3 or not std > 0:
        return ReturnMoments(math.nan, math.nan, math.nan, n)
    return ReturnMoments(
        sharpe=float(values.mean() / std),
        skewness=float(stats.skew(values)),
        kurtosis=float(stats.kurtosis(values, fisher=False)),
        n_obs=n,
    )


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark: float, n_obs: int, skewness: float = 0.0, kurtosis: float = 3.0
) -> float:
    """PSR: probability that the true per-period Sharpe exceeds ``benchmark`` given an estimate
    ``sharpe`` from ``n_obs`` returns with that skewness and (non-excess) kurtosis."""
    values = (sharpe, benchmark, skewness, kurtosis)
    if n_obs < 2 or not all(math.isfinite(v) for v in values):
        return math.nan
    variance = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not variance > 0:  # only for moments no return series has (kurtosis < 1 + skew^2)
        return math.nan
    z = (sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """SR0: expected maximum of ``n_trials`` Sharpe estimates whose true value is 0 and whose
    variance across trials is ``sharpe_variance`` (per-period units). 0 for a single trial."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if not (math.isfinite(sharpe_variance) and sharpe_variance >= 0):
        raise ValueError(f"sharpe_variance must be finite and >= 0, got {sharpe_variance}")
    if n_trials == 1:
        return 0.0  # nothing was selected: the benchmark is the null itself
    z = stats.norm.ppf
    spread = ((1.0 - EULER_GAMMA) * z(1.0 - 1.0 / n_trials)
              + EULER_GAMMA * z(1.0 - 1.0 / (n_trials * math.e)))
    return float(math.sqrt(sharpe_variance) * spread)


@dataclass(frozen=True)
class DeflatedSharpe:
    """The deflated Sharpe ratio of one return series and everything it was computed from
    (Sharpe ratios per period)."""

    sharpe: float
    skewness: float
    kurtosis: float
    n_obs: int
    n_trials: int
    trial_sharpe_variance: float
    expected_max_sharpe: float
    probabilistic_sharpe: float  # PSR against 0
    deflated_sharpe: float  # PSR against expected_max_sharpe

    def as_dict(self) -> dict:
        return asdict(self)


def deflated_sharpe_ratio(returns, n_trials: int, trial_sharpe_variance: float) -> DeflatedSharpe:
    """DSR of ``returns`` (per-period) after ``n_trials`` configurations whose per-period Sharpe
    ratios have variance ``trial_sharpe_variance``."""
    moments = return_moments(returns)
    benchmark = expected_max_sharpe(n_trials, trial_sharpe_variance)
    return DeflatedSharpe(
        sharpe=moments.sharpe,
        skewness=moments.skewness,
        kurtosis=moments.kurtosis,
        n_obs=moments.n_obs,
        n_trials=int(n_trials),
        trial_sharpe_variance=float(trial_sharpe_variance),
        expected_max_sharpe=benchmark,
        probabilistic_sharpe=probabilistic_sharpe_ratio(
            moments.sharpe, 0.0, moments.n_obs, moments.skewness, moments.kurtosis),
        deflated_sharpe=probabilistic_sharpe_ratio(
            moments.sharpe, benchmark, moments.n_obs, moments.skewness, moments.kurtosis),
    )
