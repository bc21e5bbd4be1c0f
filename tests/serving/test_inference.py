"""The inference pipeline: latest raw panel + pickled chain -> ranked last-date predictions."""

import pickle

import pytest

from tests.serving.upstream import build_chain, build_upstream
from tests.support import run_pipeline


def test_latest_predictions_match_the_chain_on_the_last_date(tmp_path):
    datasets, overrides = build_upstream(tmp_path, n_days=500)
    chain = build_chain(datasets, overrides)
    path = tmp_path / "chain.pkl"
    path.write_bytes(pickle.dumps(chain))
    params = {**overrides, "inference": {"chain_path": str(path), "history_days": 120}}
    out = run_pipeline("inference", {}, params)
    latest = out["latest_predictions"]
    assert list(latest.columns) == ["date", "ticker", "prediction", "rank"]
    last_date = datasets["primary_panel"]["date"].max()
    assert (latest["date"] == last_date).all()
    assert len(latest) == datasets["primary_panel"]["ticker"].nunique()
    assert sorted(latest["rank"]) == list(range(1, len(latest) + 1))
    assert latest["prediction"].is_monotonic_decreasing
    test = datasets["ensemble_test_predictions"]
    expected = test.query("model == 'final' and date == @last_date")
    merged = expected.merge(latest, on=["date", "ticker"], suffixes=("", "_latest"))
    assert len(merged) == len(latest)
    assert (merged["prediction"] - merged["prediction_latest"]).abs().max() < 1e-5


def test_missing_chain_says_what_to_run(tmp_path):
    datasets, overrides = build_upstream(tmp_path, n_days=400)
    params = {**overrides, "inference": {"chain_path": str(tmp_path / "none.pkl")}}
    with pytest.raises(Exception, match="kedro run"):
        run_pipeline("inference", {}, params)
