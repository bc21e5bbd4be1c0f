"""Pseudo-Bayesian model averaging weights from out-of-fold Gaussian predictive log-likelihoods.

Predictions of different models live on different scales, so a likelihood of the raw prediction
would compare scales rather than skill. Each model m is therefore turned into a Gaussian
predictive distribution first, on per-date standardised values:

    y_ti = a_m + b_m * z_mti + e,   e ~ N(0, s_m^2)

where ``z_mti`` is model m's per-date standardised prediction for name i at date t and ``y_ti``
the per-date standardised label. (a_m, b_m, s_m^2) are fitted by least squares on the *other*
blocks of the out-of-fold data (blocks = CV folds, or two halves by date when only one fold is
given), with b_m >= 0, and the held-out rows of each block are scored:

    log p(y_ti | m) = -0.5 * log(2 * pi * s_m^2) - (y_ti - a_m - b_m z_mti)^2 / (2 s_m^2)

The pointwise values are summed per date, L_mt = sum_i log p(y_ti | m), and
elpd_m = sum_t L_mt. Pseudo-BMA weights are w_m = exp(elpd_m) / sum_k exp(elpd_k).

With thousands of rows these weights collapse onto one model as soon as it is slightly better
in-sample. The Bayesian bootstrap (pseudo-BMA+, Yao et al. 2018) accounts for the uncertainty of
the elpd: dates are the exchangeable units (names within a date share common shocks), Dirichlet(1)
weights alpha over the T dates give elpd_m^b = T * sum_t alpha_t L_mt, and
w_m = mean_b softmax(elpd^b)_m, i.e. close to the share of resamples in which model m wins.

Rows enter only where every model has a prediction, so all models are scored on the same points.
The slope is floored at 0 because the weights multiply the predictions as they are, like every
other combiner's non-negative weights: a model that ranks names the wrong way round would
otherwise be scored by the size of its error, not its sign, win nearly all the weight and be
served upside down. At b_m = 0 it scores as a model that knows nothing.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

LOG_2PI = float(np.log(2.0 * np.pi))


def heldout_blocks(folds: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Block id of each row for cross-fitting the calibration.

    The CV folds when at least two are present; otherwise the first and second half of the dates.
    """
    folds = np.asarray(folds)
    if len(np.unique(folds)) >= 2:
        return folds
    unique_dates = np.unique(dates)
    cut = unique_dates[len(unique_dates) // 2]
    return (np.asarray(dates) >= cut).astype(np.int64)


class TooFewCalibrationRows(ValueError):
    """A block has fewer than 3 rows to be calibrated on (outside it and its purge)."""


def calibrated_gaussian_loglik(z: np.ndarray, y: np.ndarray, blocks: np.ndarray,
                               dates: np.ndarray | None = None, purge_dates: int = 0
                               ) -> np.ndarray:
    """Held-out Gaussian log predictive density of every row under every model, shape (n, M).

    ``z`` (n, M): standardised predictions; ``y`` (n,): standardised labels; ``blocks`` (n,): the
    cross-fitting block of each row. Inputs must be finite. With ``dates`` (n,) and
    ``purge_dates``, a block is calibrated without the rows within that many dates of its first
    and last date: their labels overlap the held rows' (the CV purge, DESIGN section 3).
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    blocks = np.asarray(blocks)
    codes = None if dates is None or purge_dates <= 0 else _factorize(np.asarray(dates))[0]
    out = np.empty_like(z)
    for block in np.unique(blocks):
        held = blocks == block
        fit = ~held
        if codes is not None:
            first, last = codes[held].min(), codes[held].max()
            fit &= (codes < first - purge_dates) | (codes > last + purge_dates)
        n_fit = int(fit.sum())
        if n_fit < 3:
            raise TooFewCalibrationRows(
                f"calibration needs at least 3 rows outside block {block} (and its purge), got "
                f"{n_fit}")
        zf, yf = z[fit], y[fit]
        z_mean, y_mean = zf.mean(axis=0), yf.mean()
        dz = zf - z_mean
        var_z = (dz * dz).sum(axis=0)
        # einsum, not BLAS: a threaded BLAS sums in an order that depends on the thread count
        slope = np.divide(np.einsum("ij,i->j", dz, yf - y_mean), var_z, out=np.zeros_like(var_z),
                          where=var_z > 0)
        slope = np.maximum(slope, 0.0)  # read the model as it is served (module docstring)
        intercept = y_mean - slope * z_mean
        resid = yf[:, None] - intercept - zf * slope
        # Unbiased residual variance of a two-parameter fit; floored so a perfect fit stays finite.
        var = np.maximum((resid * resid).sum(axis=0) / (n_fit - 2), 1e-12)
        err = y[held, None] - intercept - z[held] * slope
        out[held] = -0.5 * (LOG_2PI + np.log(var)) - 0.5 * err * err / var
    return out


def loglik_by_date(pointwise: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Sum pointwise log-likelihoods (n, M) per date: (T, M) with dates in ascending order."""
    codes, _ = _factorize(dates)
    n_dates = int(codes.max()) + 1 if codes.size else 0
    return np.stack(
        [np.bincount(codes, weights=pointwise[:, m], minlength=n_dates)
         for m in range(pointwise.shape[1])],
        axis=1,
    )


def pseudo_bma_weights(
    date_loglik: np.ndarray, bootstrap_draws: int = 1000, seed: int = 0, block_dates: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(weights, elpd) from per-date log-likelihoods (T, M).

    ``bootstrap_draws`` = 0 gives plain pseudo-BMA (softmax of elpd); otherwise pseudo-BMA+ with
    Bayesian-bootstrap weights (seeded, reproducible) over blocks of ``block_dates`` consecutive
    dates: the labels of dates closer than the horizon share returns, so single dates are not
    exchangeable units, and resampling them one by one understates the elpd's spread (the
    weights of h-day labels collapsed onto one model: 0.998 at h = 10 against 0.92 with blocks
    of h dates). 1 = dates; fewer than two blocks' worth of dates are resampled one by one.
    """
    date_loglik = np.asarray(date_loglik, dtype=np.float64)
    n_dates = date_loglik.shape[0]
    if n_dates == 0:
        raise ValueError("pseudo-BMA needs at least one date with every model's prediction")
    elpd = date_loglik.sum(axis=0)
    if bootstrap_draws <= 0:
        return softmax(elpd), elpd
    size = max(1, int(block_dates))
    if n_dates < 2 * size:  # one block would be plain softmax: the most collapsed weights
        size = 1
    # whole blocks, the last one taking the leftover dates (a stub block weighed as a full one
    # would give its few dates outsized influence)
    blocks = (np.add.reduceat(date_loglik, np.arange(n_dates // size) * size, axis=0)
              if size > 1 else date_loglik)
    rng = np.random.default_rng(seed)
    alpha = rng.dirichlet(np.ones(len(blocks)), size=int(bootstrap_draws))
    # einsum, not BLAS (`@`): OpenBLAS splits a large product across threads and the weights'
    # last digits then depend on the machine's thread count; einsum's loop order is fixed
    resampled = len(blocks) * np.einsum("dt,tm->dm", alpha, blocks)
    return softmax(resampled, axis=1).mean(axis=0), elpd


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniques, codes = np.unique(np.asarray(values), return_inverse=True)
    return codes.ravel(), uniques
