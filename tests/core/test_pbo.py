"""CSCV probability of backtest overfitting: a brute-force reference and the known answers."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bma_quant.core.evaluation.pbo import cscv_pbo, n_splits


def _noise(n_days: int, n_configs: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(0.0, 0.01, size=(n_days, n_configs)),
                        columns=[f"c{i}" for i in range(n_configs)])


def _reference_logits(returns: pd.DataFrame, n_blocks: int) -> np.ndarray:
    """CSCV written out row by row from the paper's steps (no block sums)."""
    blocks = np.array_split(np.arange(len(returns)), n_blocks)
    logits = []
    for chosen in itertools.combinations(range(n_blocks), n_blocks // 2):
        is_rows = np.concatenate([blocks[b] for b in chosen])
        oos_rows = np.setdiff1d(np.arange(len(returns)), is_rows)
        is_part, oos_part = returns.iloc[is_rows], returns.iloc[oos_rows]
        best = int(np.argmax((is_part.mean() / is_part.std(ddof=1)).to_numpy()))
        oos_sharpe = (oos_part.mean() / oos_part.std(ddof=1)).to_numpy()
        omega = stats.rankdata(oos_sharpe)[best] / (returns.shape[1] + 1)
        logits.append(np.log(omega / (1 - omega)))
    return np.array(logits)


def test_matches_a_brute_force_reference():
    returns = _noise(240, 7, seed=3)
    result = cscv_pbo(returns, n_blocks=6)
    expected = _reference_logits(returns, 6)
    assert len(result.splits) == n_splits(6) == 20
    np.testing.assert_allclose(result.logits, expected, atol=1e-9)
    assert result.pbo == pytest.approx(float(np.mean(expected <= 0)))


def test_pure_noise_overfits_about_half_the_time():
    # one market's PBO is noisy (its splits share data); over markets it centres on 0.5: the
    # in-sample winner is a coin flip out of sample
    results = [cscv_pbo(_noise(1500, 40, seed), n_blocks=16) for seed in range(8)]
    assert 0.4 <= np.mean([r.pbo for r in results]) <= 0.65
    assert all(r.pbo > 0.25 for r in results)
    assert all(r.splits["omega"].between(0, 1).all() for r in results)


def test_a_strong_planted_edge_is_not_overfit():
    returns = _noise(1500, 40, seed=4)
    returns["edge"] = np.random.default_rng(5).normal(0.002, 0.01, len(returns))  # ~3 annualised
    result = cscv_pbo(returns, n_blocks=16)
    assert result.pbo < 0.2
    assert (result.splits["best_configuration"] == "edge").mean() > 0.9
    assert result.probability_of_loss < 0.05


def test_bad_input_is_refused_with_the_reason():
    returns = _noise(200, 5, seed=0)
    with pytest.raises(ValueError, match="even number of blocks"):
        cscv_pbo(returns, n_blocks=5)
    with pytest.raises(ValueError, match="at least 2 configurations"):
        cscv_pbo(returns[["c0"]], n_blocks=4)
    with pytest.raises(ValueError, match="2 dates per block"):
        cscv_pbo(returns.head(10), n_blocks=8)
    with pytest.raises(ValueError, match="finite"):
        cscv_pbo(returns.mask(returns.index.to_series() == 3, axis=0), n_blocks=4)
