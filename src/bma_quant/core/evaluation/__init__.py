"""Scoring and the honesty of the numbers: metrics, backtests, the test-period table, luck statistics (trial accounting, deflated Sharpe, PBO, CPCV), gates, promotion, portfolios and plots."""
