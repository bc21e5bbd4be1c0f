"""A Gaussian hidden Markov model: EM fit on one sequence and a causal forward filter (numpy).

`fit_gaussian_hmm` runs Baum-Welch (scaled forward-backward) on the rows it is given; smoothed
posteriors are used only inside the fit, over the fit dates. `filter_probabilities` is the forward
recursion P(s_t | x_1..x_t) with fixed parameters: the value at t reads rows <= t only, so it is
prefix-invariant. Missing values in a row are integrated out (the Gaussian marginal of the
observed coordinates); a row with nothing observed leaves the prediction step unchanged.
hmmlearn would give the same fit but is not a project dependency, and its `predict` /
`predict_proba` use the whole sequence (smoothing), which the causal rule forbids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans


@dataclass(frozen=True)
class GaussianHMM:
    start: np.ndarray  # (k,)
    transition: np.ndarray  # (k, k), rows sum to 1
    means: np.ndarray  # (k, n_dims)
    covariances: np.ndarray  # (k, n_dims, n_dims)
    log_likelihood: float
    n_iter: int


def _log_densities(x: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """(n_rows, k) Gaussian log densities of each row's observed coordinates."""
    n_rows, k = x.shape[0], means.shape[0]
    out = np.zeros((n_rows, k))
    observed = np.isfinite(x)
    patterns, inverse = np.unique(observed, axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        rows = np.flatnonzero(inverse.reshape(-1) == p)
        if not pattern.any():
            continue  # nothing observed: every state equally likely
        xs = x[np.ix_(rows, pattern)]
        for j in range(k):
            cov = covariances[j][np.ix_(pattern, pattern)]
            chol = np.linalg.cholesky(cov)
            solved = np.linalg.solve(chol, (xs - means[j, pattern]).T)
            out[rows, j] = (-0.5 * (solved**2).sum(axis=0) - np.log(np.diag(chol)).sum()
                            - 0.5 * pattern.sum() * np.log(2 * np.pi))
    return out


def _forward(log_b: np.ndarray, start: np.ndarray, transition: np.ndarray):
    """Scaled forward pass: filtered probabilities (n, k) and log normalisers (n,)."""
    n, k = log_b.shape
    alpha = np.empty((n, k))
    scale = np.empty(n)
    predicted = start
    for t in range(n):
        shift = log_b[t].max()
        a = predicted * np.exp(log_b[t] - shift)
        total = a.sum()
        alpha[t] = a / total
        scale[t] = np.log(total) + shift
        predicted = alpha[t] @ transition
    return alpha, scale


def filter_probabilities(model: GaussianHMM, x: np.ndarray) -> np.ndarray:
    """Forward (filtered) state probabilities P(s_t | x_1..x_t), shape (n_rows, k)."""
    log_b = _log_densities(np.asarray(x, dtype=np.float64), model.means, model.covariances)
    return _forward(log_b, model.start, model.transition)[0]


def fit_gaussian_hmm(
    x: np.ndarray,
    n_states: int,
    *,
    n_iter: int = 50,
    tol: float = 1e-4,
    covariance_floor: float = 1e-3,
    stay_prior: float = 0.95,
    seed: int = 0,
    kmeans_inits: int = 4,
) -> GaussianHMM:
    """EM on complete rows of `x` (rows with a missing value are dropped from the fit).

    Initialised by k-means (seeded, the best of `kmeans_inits` starts) with a sticky transition matrix (`stay_prior` on the
    diagonal); `covariance_floor` is added to every covariance's diagonal (x is expected to be
    standardised) so a state cannot collapse onto a few rows."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    n, dims = x.shape
    if n < n_states * (dims + 2):
        raise ValueError(f"gaussian HMM: {n} complete rows are too few for {n_states} states in "
                         f"{dims} dimensions")
    labels = KMeans(n_states, n_init=kmeans_inits, random_state=seed).fit_predict(x)
    ridge = covariance_floor * np.eye(dims)
    means = np.array([x[labels == j].mean(axis=0) for j in range(n_states)])
    covariances = np.array([np.cov(x[labels == j].T) + ridge if (labels == j).sum() > dims
                            else np.cov(x.T) + ridge for j in range(n_states)])
    transition = np.full((n_states, n_states), (1 - stay_prior) / max(n_states - 1, 1))
    np.fill_diagonal(transition, stay_prior)
    start = np.full(n_states, 1.0 / n_states)
    previous, iterations = -np.inf, 0
    while iterations < n_iter:
        iterations += 1
        log_b = _log_densities(x, means, covariances)
        alpha, scale = _forward(log_b, start, transition)
        log_likelihood = float(scale.sum())
        # Backward pass with the forward scaling: posteriors gamma and pair counts xi.
        b = np.exp(log_b - log_b.max(axis=1, keepdims=True))
        norm = np.exp(scale - log_b.max(axis=1))  # alpha-scale per row in b's units
        beta = np.ones((n, n_states))
        xi = np.zeros((n_states, n_states))
        for t in range(n - 2, -1, -1):
            weighted = b[t + 1] * beta[t + 1]
            beta[t] = transition @ weighted / norm[t + 1]
            xi += transition * np.outer(alpha[t], weighted) / norm[t + 1]
        gamma = alpha * beta
        gamma /= gamma.sum(axis=1, keepdims=True)
        start = gamma[0] / gamma[0].sum()
        transition = xi / xi.sum(axis=1, keepdims=True)
        weights = gamma.sum(axis=0)
        means = (gamma.T @ x) / weights[:, None]
        covariances = np.array([
            ((x - means[j]).T * gamma[:, j]) @ (x - means[j]) / weights[j] + ridge
            for j in range(n_states)
        ])
        if log_likelihood - previous < tol * abs(log_likelihood):
            break
        previous = log_likelihood
    return GaussianHMM(start, transition, means, covariances, log_likelihood, iterations)

