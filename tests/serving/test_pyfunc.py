"""The pyfunc wrapper: requests the chain cannot score are the caller's fault (HTTP 400 with a
message), and the logged requirements pin every distribution the chain imports."""

from importlib.metadata import version

import pytest
from mlflow.exceptions import MlflowException

from bma_quant.pipelines.evaluation import nodes
from bma_quant.serving.pyfunc import BmaQuantChain, to_model_input
from bma_quant.serving.requirements import chain_pip_requirements
from tests.serving.upstream import build_chain, build_upstream


@pytest.fixture(scope="module")
def model_and_raw(tmp_path_factory):
    import pandas as pd

    datasets, overrides = build_upstream(tmp_path_factory.mktemp("pyfunc"), n_days=400)
    model = BmaQuantChain()
    model.chain = build_chain(datasets, overrides)
    return model, pd.read_parquet(overrides["data"]["raw_path"])


def _last_dates(raw, n):
    dates = sorted(raw["date"].unique())[-n:]
    return to_model_input(raw.loc[raw["date"].isin(dates)])


def test_enough_history_scores_the_last_date(model_and_raw):
    model, raw = model_and_raw
    warmup = model.chain.warmup_days
    out = model.predict(None, _last_dates(raw, warmup + 1), params={"last_date_only": True})
    assert len(out) == raw["ticker"].nunique() and out["prediction"].notna().all()
    assert (out["date"] == raw["date"].max()).all()


def test_too_little_history_is_a_400_naming_the_lookback(model_and_raw):
    model, raw = model_and_raw
    warmup = model.chain.warmup_days
    with pytest.raises(MlflowException, match=rf"lookback of {warmup} trading dates") as info:
        model.predict(None, _last_dates(raw, warmup), params={"last_date_only": True})
    assert info.value.get_http_status_code() == 400
    assert "add at least 1 earlier date" in info.value.message


def test_unknown_tickers_are_a_400(model_and_raw):
    model, raw = model_and_raw
    request = _last_dates(raw, model.chain.warmup_days + 1).assign(ticker="ZZZ_" + raw["ticker"])
    request = request.drop_duplicates(["date", "ticker"])
    with pytest.raises(MlflowException, match="no ticker of the training universe") as info:
        model.predict(None, request)
    assert info.value.get_http_status_code() == 400


def test_requirements_pin_the_learners_and_statsmodels():
    pins = chain_pip_requirements()
    for name in ("xgboost", "lightgbm", "statsmodels", "scikit-learn", "pandas"):
        assert f"{name}=={version(name)}" in pins
    with pytest.raises(RuntimeError, match="no_such_dist"):
        chain_pip_requirements(("no_such_dist",))


def test_reproduction_slice_still_scores(model_and_raw):
    # the evaluation's reproduction check feeds exactly warmup_days dates before test_start
    model, raw = model_and_raw
    dates = sorted(raw["date"].unique())
    split = {"test_start": dates[-50], "test_end": dates[-1]}
    out = model.chain.predict(nodes.test_slice(raw, split, model.chain.warmup_days))
    assert out["date"].nunique() == 50
