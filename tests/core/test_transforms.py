"""Per-date cross-sectional transforms: winsorise, rank, z-score, sector neutralisation."""

import numpy as np
import pandas as pd
import pytest

from bma_quant.core.features import transforms as T


@pytest.fixture
def matrix():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 25)) * np.linspace(1, 5, 40)[:, None]
    x[rng.random(x.shape) < 0.1] = np.nan
    x[3] = np.nan  # an empty date
    x[4, :] = 2.0  # a constant date
    x[5, :10] = np.round(x[5, :10])  # ties
    return x


def test_winsorise_clips_each_row_to_its_own_quantiles(matrix):
    out = T.winsorise(matrix, 0.05, 0.95)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.nanquantile(matrix, 0.05, axis=1, keepdims=True)
            hi = np.nanquantile(matrix, 0.95, axis=1, keepdims=True)
    np.testing.assert_allclose(out, np.clip(matrix, lo, hi), atol=1e-12)
    assert np.isnan(out[3]).all()


def test_centred_rank_matches_pandas_average_ranks(matrix):
    out = T.centred_rank(matrix)
    ranks = pd.DataFrame(matrix).rank(axis=1).to_numpy()
    n = np.isfinite(matrix).sum(axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(out, (ranks - 0.5) / n - 0.5, atol=1e-12)
    assert np.nanmax(np.abs(out)) < 0.5
    np.testing.assert_allclose(out[4][np.isfinite(out[4])], 0.0)  # constant date: all tied
    np.testing.assert_array_equal(np.isnan(out), np.isnan(matrix))


def test_zscore_has_zero_mean_unit_std_per_row(matrix):
    out = T.zscore(matrix)
    varying = [i for i in range(len(matrix)) if i not in (3, 4)]
    np.testing.assert_allclose(np.nanmean(out[varying], axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.nanstd(out[varying], axis=1), 1.0, atol=1e-12)
    assert (out[4][np.isfinite(out[4])] == 0).all()


@pytest.mark.parametrize("time_varying", [False, True])
def test_sector_neutralise_demeans_within_sector_and_date(matrix, time_varying):
    codes = np.tile(np.arange(25) % 3, (40, 1))
    codes[:, 0] = -1  # unknown sector: demeaned against the whole date
    if time_varying:
        codes[20:, 1] = 2
    out = T.sector_neutralise(matrix, codes)
    for t in (0, 10, 25):
        for s in range(3):
            members = (codes[t] == s) & np.isfinite(matrix[t])
            assert np.nanmean(out[t, members]) == pytest.approx(0.0, abs=1e-12)
            np.testing.assert_allclose(
                out[t, members], matrix[t, members] - matrix[t, members].mean(), atol=1e-12
            )
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):  # an all-missing date
        whole = np.nanmean(matrix, axis=1)
    np.testing.assert_allclose(out[:, 0], matrix[:, 0] - whole)


def test_sector_codes_marks_unknown_as_minus_one():
    codes = T.sector_codes(np.array([["a", None], ["b", "a"]], dtype=object))
    assert codes[0, 1] == -1 and codes[0, 0] == codes[1, 1] and codes[1, 0] != codes[0, 0]


def test_transform_is_per_date(matrix):
    """A date's output depends on that date's cross-section only (no fitting across time)."""
    codes = np.tile(np.arange(25) % 3, (40, 1))
    full = T.cross_sectional_transform(matrix, "rank", (0.01, 0.99), codes)
    changed = matrix.copy()
    changed[30:] *= 100.0
    part = T.cross_sectional_transform(changed, "rank", (0.01, 0.99), codes)
    np.testing.assert_array_equal(full[:30], part[:30])
    with pytest.raises(ValueError, match="method"):
        T.cross_sectional_transform(matrix, "minmax")


def test_small_sectors_are_demeaned_against_the_whole_date():
    """A lone name of its sector is not erased (0) nor left raw: raw, a positive factor such as
    a volatility put every small sector's name above the demeaned ones (around 0), at the top of
    every date's ranking, whatever its value."""
    values = np.array([[1.0, 2.0, 3.0, 10.0, np.nan]])
    codes = np.array([[0, 0, 0, 1, 1]])
    out = T.sector_neutralise(values, codes, min_size=2)
    np.testing.assert_allclose(out[0, :3], [-1.0, 0.0, 1.0])
    assert out[0, 3] == 10.0 - 4.0  # the only valid name of its sector: the date's mean is 4
    varying = np.tile(codes, (2, 1))
    varying[1, 2] = 1  # time-varying sectors take the general path
    out2 = T.sector_neutralise(np.tile(values, (2, 1)), varying, min_size=2)
    np.testing.assert_allclose(out2[1, :4], [-0.5, 0.5, -3.5, 3.5])
    np.testing.assert_allclose(out2[0, :4], out[0, :4])
    # the lowest volatility, alone in its sector, ranks lowest (it ranked highest)
    vol = np.array([[.020, .021, .022, .023, .024, .025, .026, .027, .028, .030, .010]] * 2)
    lone = np.array([[0] * 10 + [1]] * 2)
    for sectors in (lone, np.vstack([lone[0], lone[0][::-1]])):
        ranked = T.cross_sectional_transform(vol, "rank", (0.01, 0.99), sectors,
                                             min_sector_size=3)
        assert ranked[0, -1] == ranked[0].min()


@pytest.mark.parametrize("time_varying", [False, True])
def test_a_sector_of_exactly_min_size_names_is_demeaned(time_varying):
    values = np.array([[1.0, 2.0, 3.0, 10.0, 12.0]] * 2)
    codes = np.array([[0, 0, 0, 1, 1]] * 2)
    if time_varying:
        codes[1] = [1, 1, 0, 0, 0]  # the general path, same sizes
    out = T.sector_neutralise(values, codes, min_size=3)
    # 3 names: demeaned within; 2: against the date's mean (5.6)
    np.testing.assert_allclose(out[0], [-1.0, 0.0, 1.0, 10.0 - 5.6, 12.0 - 5.6])


@pytest.mark.parametrize("time_varying", [False, True])
def test_the_same_names_under_other_tickers_get_the_same_ranks(time_varying):
    """Tickers order the columns. A sector's mean was summed in that order, so two names at
    their sectors' means differed by the last bit (0.55 - 0.55000000000000004 against 0.5 -
    0.5), the rank split the tie, and renaming a panel's tickers moved discrete factors' ranks
    (up-day counts), the tuned parameters and the chosen ensemble. Now the sums do not depend
    on the columns' order and a difference within rounding is a tie."""
    rng = np.random.default_rng(3)
    values = rng.integers(0, 20, size=(200, 60)) / 20.0  # an up-day share: many ties
    values[rng.random(values.shape) < 0.05] = np.nan
    codes = np.tile(np.arange(60) % 7, (200, 1))
    codes[:, :3] = -1  # unknown sectors, demeaned against the whole date
    if time_varying:
        codes[100:, 10] = 2
    first = T.cross_sectional_transform(values, "rank", None, codes, min_sector_size=9)
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(60)
        again = T.cross_sectional_transform(values[:, order], "rank", None, codes[:, order],
                                            min_sector_size=9)
        np.testing.assert_array_equal(again, first[:, order])
    # sectors that change on a few dates are demeaned stretch by stretch, the same bits as the
    # per-date path takes when they change too often (and as a serving slice of the rows)
    codes[50:, 20] = 3
    per_date = T.MAX_SECTOR_RUNS
    try:
        T.MAX_SECTOR_RUNS = 0
        one_by_one = T.sector_neutralise(values, codes, 9)
    finally:
        T.MAX_SECTOR_RUNS = per_date
    np.testing.assert_array_equal(T.sector_neutralise(values, codes, 9), one_by_one)
    np.testing.assert_array_equal(T.sector_neutralise(values[120:], codes[120:], 9),
                                  one_by_one[120:])
    # the helper's case: 0.55 at its sector's mean and 0.5 at its own share their rank
    row = np.array([[0.60, 0.55, 0.50, 0.55, 0.50, 0.45]])
    demeaned = T.sector_neutralise(row, np.array([[0, 0, 0, 1, 1, 1]]))
    assert demeaned[0, 1] == demeaned[0, 4] == 0.0


def test_winsorising_comes_before_sector_neutralising():
    """DESIGN: per date winsorise -> sector-neutralise -> rank / z-score. Two sectors far apart:
    the whole cross-section's quantiles clip the high sector's top, then each is demeaned."""
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(0, 1, (3, 30)), rng.normal(100, 1, (3, 30))], axis=1)
    values[:, -1] += 50.0  # an outlier in the high sector
    codes = np.tile(np.repeat([0, 1], 30), (3, 1))
    winsor = (0.05, 0.95)
    out = T.cross_sectional_transform(values, "zscore", winsor, codes)
    in_order = T.zscore(T.sector_neutralise(T.winsorise(values, *winsor), codes, 1))
    swapped = T.zscore(T.winsorise(T.sector_neutralise(values, codes, 1), *winsor))
    np.testing.assert_allclose(out, in_order)
    assert not np.allclose(out, swapped)


def test_the_small_sector_fallback_is_per_date_and_old_chains_keep_theirs():
    """A date without any sector big enough is left as it is (as without sectors), whatever
    later dates hold: the cut panel reads the same (prefix invariance). "raw" is what chains
    pickled before the setting existed did, and their TransformConfig reads it back."""
    import pickle

    from bma_quant.core.features.factors import TransformConfig

    values = np.array([[1.0, 2.0, 3.0, 10.0], [1.0, 2.0, 3.0, 10.0]])
    codes = np.array([[-1, -1, -1, -1], [0, 0, 0, -1]])  # sectors known from the 2nd date
    full = T.sector_neutralise(values, codes, min_size=3)
    np.testing.assert_array_equal(full[0], values[0])  # nothing demeaned that date
    np.testing.assert_array_equal(T.sector_neutralise(values[:1], codes[:1], min_size=3),
                                  full[:1])
    np.testing.assert_allclose(full[1], [-1.0, 0.0, 1.0, 10.0 - 4.0])
    np.testing.assert_allclose(T.sector_neutralise(values, codes, 3, "raw")[1],
                               [-1.0, 0.0, 1.0, 10.0])
    assert TransformConfig.from_params({}).small_sector_fallback == "whole_date"
    old = TransformConfig.from_params({})
    state = dict(old.__dict__)
    del state["small_sector_fallback"]  # as pickled before the field existed
    revived = pickle.loads(pickle.dumps(old))
    revived.__dict__.clear()
    revived.__dict__.update(state)
    assert revived.small_sector_fallback == "raw"


def test_chains_pickled_before_the_order_free_sums_keep_their_column_order_sums():
    """A chain pickled before the sums became order-free was trained on sums in the tickers'
    order: its TransformConfig (no `order_free_sums`: the class default) still computes them,
    so serving gives the features it was trained on; a config from params is order-free."""
    import pickle

    from bma_quant.core.features.factors import TransformConfig

    old = TransformConfig()
    state = dict(old.__dict__)
    state.pop("order_free_sums")
    unpickled = pickle.loads(pickle.dumps(old))
    unpickled.__dict__.clear()
    unpickled.__dict__.update(state)  # as a pickle of the class before the field existed
    assert unpickled.order_free_sums is False
    assert TransformConfig.from_params({}).order_free_sums is True
    row = np.array([[0.60, 0.55, 0.50, 0.55, 0.50, 0.45]])
    codes = np.array([[0, 0, 0, 1, 1, 1]])
    old_sums = T.sector_neutralise(row, codes, order_free=False)
    new_sums = T.sector_neutralise(row, codes)
    assert new_sums[0, 1] == new_sums[0, 4] == 0.0  # the tie kept
    assert old_sums[0, 1] != old_sums[0, 4]  # the tie split by the last bit, as trained
    np.testing.assert_allclose(old_sums, new_sums, atol=1e-15)
