"""Market regimes: evidence, detectors (rules, Markov switching, Gaussian HMM) with causal filtering, and the regime-aware models."""
