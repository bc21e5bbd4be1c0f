"""MedianImputer: the same medians and filled cells as SimpleImputer(strategy="median",
keep_empty_features=True), which it replaces in the ElasticNet pipeline for speed."""

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer

from bma_quant.core.models.imputation import MedianImputer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_rows", [1000, 1001])  # even and odd counts: the middle pair's mean
def test_median_imputer_equals_simple_imputer(dtype, n_rows):
    rng = np.random.default_rng(0)
    train = rng.standard_normal((n_rows, 5)).astype(dtype)
    train[rng.random(train.shape) < 0.1] = np.nan
    train[:, 2] = np.nan                              # no value: filled with 0
    train[:, 4] = np.round(train[:, 4], 1)            # ties
    new = rng.standard_normal((300, 5)).astype(dtype)
    new[rng.random(new.shape) < 0.3] = np.nan
    names = [f"f{i}" for i in range(5)]
    ours = MedianImputer().fit(pd.DataFrame(train, columns=names))
    theirs = SimpleImputer(strategy="median", keep_empty_features=True).fit(
        pd.DataFrame(train, columns=names))
    np.testing.assert_array_equal(ours.statistics_, theirs.statistics_)
    assert ours.statistics_[2] == 0.0
    assert list(ours.feature_names_in_) == names       # the serving chain checks the names
    for frame in (pd.DataFrame(train, columns=names), pd.DataFrame(new, columns=names)):
        filled = ours.transform(frame)
        np.testing.assert_array_equal(filled, theirs.transform(frame))
        assert filled.dtype == dtype and not np.isnan(filled).any()
    before = new.copy()
    MedianImputer().fit(train).transform(new)
    np.testing.assert_array_equal(new, before)         # an array is not filled in place


def test_median_imputer_rejects_infinite_values_and_other_columns():
    ok = np.array([[1.0, 2.0], [3.0, np.nan]])
    with pytest.raises(ValueError, match="infinity"):
        MedianImputer().fit(np.array([[1.0, np.inf], [2.0, 3.0]]))
    fitted = MedianImputer().fit(pd.DataFrame(ok, columns=["a", "b"]))
    with pytest.raises(ValueError, match="feature names"):
        fitted.transform(pd.DataFrame(ok, columns=["a", "c"]))
