"""Champion promotion: gates AND better on the same test period; one registered model per data."""

from bma_quant.core.evaluation import promotion
from bma_quant.core.evaluation.promotion import Candidate, decide


def _candidate(value, passed=True, start="2020-01-02", end="2021-12-31", metric="rank_ic"):
    return Candidate(passed, () if passed else ("sharpe",), start, end, metric, value)


def _champion(value, start="2020-01-02", end="2021-12-31", metric="rank_ic"):
    return _candidate(value, start=start, end=end, metric=metric).tags()


def test_first_passing_version_becomes_champion_a_failing_one_never():
    assert decide(_candidate(0.01), None).promote
    failing = decide(_candidate(0.5, passed=False), None)
    assert not failing.promote and failing.reason == "gates failed: sharpe"


def test_champion_moves_only_when_beaten_on_the_same_test_period():
    assert decide(_candidate(0.06), _champion(0.05), "3").promote
    tie = decide(_candidate(0.05), _champion(0.05), "3")
    assert not tie.promote and "does not beat champion version 3's 0.05" in tie.reason
    other = decide(_candidate(0.5), _champion(0.05, start="2019-01-02"), "3")
    assert not other.promote and "2019-01-02" in other.reason and "differs" in other.reason
    metric = decide(_candidate(0.5, metric="sharpe"), _champion(0.05), "3")
    assert not metric.promote and "compared on rank_ic" in metric.reason


def test_a_drawdown_is_better_when_smaller():
    def drawdown(value):
        return _candidate(value, metric="max_drawdown")

    deeper = decide(drawdown(0.054), _champion(0.051, metric="max_drawdown"), "19")
    assert not deeper.promote and "(lower is better)" in deeper.reason
    assert decide(drawdown(0.04), _champion(0.051, metric="max_drawdown"), "19").promote


def test_a_missing_compare_value_is_never_promoted():
    for value in (None, float("nan")):
        decision = decide(_candidate(value), None)
        assert not decision.promote and "headline_metrics" in decision.reason
    # a champion without a finite value is beaten by any finite one on the same period
    assert decide(_candidate(-0.01), _champion(None), "1").promote


def test_registered_model_name_per_data_set():
    assert promotion.registered_model_name("bma_quant", "sp500_prices") == "bma_quant-sp500_prices"
    assert promotion.registered_model_name("bma_quant", "my data (v2)") == "bma_quant-my_data_v2"
    assert promotion.registered_model_name("bma_quant", None) == "bma_quant"
    assert promotion.registered_model_name("bma_quant", "x", "team") == "team"


def test_description_names_data_period_gates_and_metrics():
    candidate = _candidate(0.0312)
    text = promotion.version_description(
        data_path="data/01_raw/p.csv", data_fingerprint="abc", candidate=candidate,
        headline={"rank_ic": 0.0312, "n_dates": 480}, model="final",
        decision=decide(candidate, None))
    assert "`data/01_raw/p.csv` (sha256 abc)" in text and "2020-01-02 .. 2021-12-31" in text
    assert "gates on `final`: pass" in text and "rank_ic 0.0312, n_dates 480" in text
    assert "champion: yes" in text
