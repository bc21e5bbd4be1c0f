"""Purged walk-forward CV (DESIGN §3): label windows never reach a test window, embargo holds."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score

from bma_quant.core.data import cv
from bma_quant.core.data.cv import (
    OOF,
    TUNING,
    PurgedWalkForwardSplit,
    assign_stages,
    fold_row_indices,
    folds_from_table,
    folds_of_stage,
    folds_table,
)
from bma_quant.core.data.temporal import TemporalConfig, TemporalConfigError

CALENDAR = pd.bdate_range("2015-01-01", periods=1200)

# (n_splits, min_train_days, horizon, delay, gap, embargo, window, max_train_days)
SETTINGS = [
    (5, 252, 10, 1, 11, 3, "expanding", None),
    (3, 100, 10, 1, 11, 0, "expanding", None),
    (8, 200, 5, 2, 9, 10, "expanding", None),
    (4, 300, 20, 1, 30, 25, "expanding", None),
    (6, 150, 10, 1, 11, 5, "sliding", 250),
    (10, 60, 1, 0, 1, 2, "sliding", 60),
]


def _splitter(n_splits, min_train, h, d, gap, embargo, window, max_train):
    temporal = TemporalConfig(horizon_days=h, execution_delay_days=d, cv_gap_days=gap,
                              cv_embargo_days=embargo)
    return PurgedWalkForwardSplit(n_splits=n_splits, temporal=temporal,
                                  min_train_days=min_train, window=window,
                                  max_train_days=max_train)


def _positions(dates) -> np.ndarray:
    return CALENDAR.get_indexer(pd.DatetimeIndex(dates))


@pytest.mark.parametrize("setting", SETTINGS)
def test_no_training_label_window_overlaps_a_test_window(setting):
    n_splits, _, h, d, *_ = setting
    folds = _splitter(*setting).date_folds(CALENDAR)
    assert len(folds) == n_splits
    for fold in folds:
        train, test = _positions(fold.train_dates), _positions(fold.test_dates)
        assert len(train) and len(test)
        # Row t is labelled with close(t+d) -> close(t+d+h): the window [t+d, t+d+h].
        label_start, label_end = train + d, train + d + h
        overlaps = (label_start <= test.max()) & (label_end >= test.min())
        assert not overlaps.any(), f"fold {fold.fold}: label windows reach the test window"
        assert train.max() + d + h < test.min()  # t + d + h < T0 (DESIGN §3)
        assert not np.isin(train, test).any()


@pytest.mark.parametrize("setting", SETTINGS)
def test_embargo_after_every_earlier_test_window_holds(setting):
    embargo = setting[5]
    folds = _splitter(*setting).date_folds(CALENDAR)
    for k, fold in enumerate(folds):
        train = _positions(fold.train_dates)
        for earlier in folds[:k]:
            stop = _positions(earlier.test_dates).max() + 1
            embargoed = np.arange(stop, stop + embargo)
            assert not np.isin(train, embargoed).any(), (
                f"fold {fold.fold} trains on the embargo after fold {earlier.fold}"
            )


def test_embargo_drops_exactly_the_days_after_a_test_window_from_later_folds():
    folds = _splitter(4, 200, 10, 1, 11, 7, "expanding", None).date_folds(CALENDAR)
    stop = _positions(folds[0].test_dates).max() + 1
    later_train = _positions(folds[2].train_dates)
    assert not np.isin(np.arange(stop, stop + 7), later_train).any()
    # The first fold's test window itself (before the embargo) is training data later on.
    assert np.isin(_positions(folds[0].test_dates), later_train).all()
    assert stop + 7 in later_train


@pytest.mark.parametrize("setting", SETTINGS)
def test_test_windows_are_contiguous_ordered_disjoint_and_reach_the_end(setting):
    n_splits, min_train, _, _, gap, *_ = setting
    folds = _splitter(*setting).date_folds(CALENDAR)
    previous_end = -1
    for fold in folds:
        test = _positions(fold.test_dates)
        assert (np.diff(test) == 1).all()
        assert test.min() == previous_end + 1 or previous_end == -1
        previous_end = test.max()
    assert _positions(folds[0].test_dates).min() == min_train + gap
    assert previous_end == len(CALENDAR) - 1


def test_expanding_window_keeps_all_history_and_sliding_window_caps_it():
    expanding = _splitter(5, 200, 10, 1, 11, 0, "expanding", None).date_folds(CALENDAR)
    sliding = _splitter(5, 200, 10, 1, 11, 0, "sliding", 150).date_folds(CALENDAR)
    for exp_fold, sl_fold in zip(expanding, sliding, strict=True):
        assert exp_fold.train_dates.min() == CALENDAR[0]
        assert len(sl_fold.train_dates) <= 150
        # Sliding keeps the most recent dates of the expanding training set.
        assert sl_fold.train_dates.max() == exp_fold.train_dates.max()
        assert set(sl_fold.train_dates) <= set(exp_fold.train_dates)
        pd.testing.assert_index_equal(sl_fold.test_dates, exp_fold.test_dates)
    assert len(sliding[-1].train_dates) == 150
    assert _positions(sliding[-1].train_dates).min() > 0


def test_min_train_days_is_the_first_folds_training_length():
    folds = _splitter(3, 321, 10, 1, 11, 3, "expanding", None).date_folds(CALENDAR)
    assert len(folds[0].train_dates) == 321


def test_the_seeds_leaky_gap_is_refused():
    seed_config = {"prediction_horizon_days": 10, "execution_delay_days": 1, "cv_gap_days": 5,
                   "cv_embargo_days": 3}
    with pytest.raises(TemporalConfigError, match=r"cv_gap_days = 5.*11"):
        TemporalConfig.from_params(seed_config)
    with pytest.raises(TemporalConfigError, match="cv_gap_days = 5"):
        PurgedWalkForwardSplit(temporal=TemporalConfig(cv_gap_days=5))
    # One day short of d + h is still a leak.
    with pytest.raises(TemporalConfigError):
        PurgedWalkForwardSplit(temporal=TemporalConfig(horizon_days=20, execution_delay_days=2,
                                                       cv_gap_days=21))


@pytest.mark.parametrize("kwargs", [{"n_splits": 0}, {"window": "rolling"},
                                    {"window": "sliding", "max_train_days": None}])
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        PurgedWalkForwardSplit(**kwargs)


def test_too_few_dates_for_the_folds_is_an_error():
    with pytest.raises(ValueError, match="Not enough dates"):
        PurgedWalkForwardSplit(n_splits=5, min_train_days=252).date_folds(CALENDAR[:260])


def _panel_rows(n_tickers=4, n_dates=600):
    dates = np.repeat(CALENDAR[:n_dates].to_numpy(), n_tickers)
    rng = np.random.default_rng(0)
    return dates, rng.standard_normal((len(dates), 3)), rng.standard_normal(len(dates))


def test_scikit_learn_interface_splits_rows_by_their_dates():
    dates, X, y = _panel_rows()
    splitter = PurgedWalkForwardSplit(n_splits=4, min_train_days=200)
    assert splitter.get_n_splits() == 4
    folds = splitter.date_folds(dates)
    splits = list(splitter.split(X, y, groups=dates))
    assert len(splits) == 4
    for (train_idx, test_idx), fold in zip(splits, folds, strict=True):
        assert set(pd.DatetimeIndex(dates[train_idx])) == set(fold.train_dates)
        assert set(pd.DatetimeIndex(dates[test_idx])) == set(fold.test_dates)
        assert len(test_idx) == 4 * len(fold.test_dates)  # every ticker of a test date
    # The same row positions as the shared-fold helper used by every pipeline.
    for (a_train, a_test), (b_train, b_test) in zip(splits, fold_row_indices(dates, folds),
                                                    strict=True):
        np.testing.assert_array_equal(a_train, b_train)
        np.testing.assert_array_equal(a_test, b_test)
    with pytest.raises(ValueError, match="groups"):
        next(splitter.split(X, y))
    # Usable wherever scikit-learn takes a splitter.
    scores = cross_val_score(Ridge(), X, y, cv=splitter, groups=dates)
    assert len(scores) == 4


def test_folds_table_round_trip():
    folds = assign_stages(_splitter(*SETTINGS[4]).date_folds(CALENDAR), 2, gap=SETTINGS[4][4])
    table = folds_table(folds)
    assert set(table.columns) == {"fold", "date", "role", "stage"}
    assert set(table["role"]) == {"train", "test"}
    back = folds_from_table(table)
    assert [f.fold for f in back] == [f.fold for f in folds]
    assert [f.stage for f in back] == [f.stage for f in folds]
    for a, b in zip(folds, back, strict=True):
        pd.testing.assert_index_equal(a.train_dates, b.train_dates, check_names=False)
        pd.testing.assert_index_equal(a.test_dates, b.test_dates, check_names=False)
    # A table written before stages existed reads as out-of-fold folds.
    assert {f.stage for f in folds_from_table(table.drop(columns="stage"))} == {OOF}


def test_tuning_folds_come_first_and_leave_out_of_fold_folds():
    folds = assign_stages(_splitter(*SETTINGS[4]).date_folds(CALENDAR), 2, gap=SETTINGS[4][4])
    tuning, oof = folds_of_stage(folds, TUNING), folds_of_stage(folds, OOF)
    assert [f.fold for f in tuning] == [0, 1]
    assert [f.fold for f in oof] == list(range(2, len(folds)))
    # every tuning test window ends before any out-of-fold test window starts
    assert max(f.test_dates.max() for f in tuning) < min(f.test_dates.min() for f in oof)
    assert [f.fold for f in folds_from_table(folds_table(folds), stage=OOF)] == [f.fold for f in oof]
    with pytest.raises(ValueError, match="n_tuning_folds"):
        assign_stages(folds, len(folds), gap=11)
    with pytest.raises(ValueError, match="n_tuning_folds"):
        assign_stages(folds, -1, gap=11)


@pytest.mark.parametrize("setting", SETTINGS)
def test_no_tuning_label_window_reaches_the_first_out_of_fold_test_window(setting):
    """The choice scored on the tuning folds must not read labels that overlap the honest
    out-of-fold labels: every tuning test date t has idx(t) + gap < idx(first out-of-fold test
    date), the purge rule between training and test (DESIGN §3)."""
    gap = setting[4]
    raw = _splitter(*setting).date_folds(CALENDAR)
    folds = assign_stages(raw, 2, gap=gap)
    tuning, first_oof = folds_of_stage(folds, TUNING), folds_of_stage(folds, OOF)[0]
    start = CALENDAR.get_loc(first_oof.test_dates.min())
    for fold in tuning:
        assert all(CALENDAR.get_loc(t) + gap < start for t in fold.test_dates)
    # only the last gap dates of the last tuning window go; the rest is untouched
    assert len(raw[1].test_dates) - len(tuning[1].test_dates) == gap
    pd.testing.assert_index_equal(tuning[0].test_dates, raw[0].test_dates)
    assert all(f.test_dates.equals(r.test_dates) and f.train_dates.equals(r.train_dates)
               for f, r in zip(folds[2:], raw[2:], strict=True))


def test_a_tuning_window_no_longer_than_the_gap_is_refused_by_name():
    folds = PurgedWalkForwardSplit(
        n_splits=4, temporal=TemporalConfig(horizon_days=10, execution_delay_days=1,
                                            cv_gap_days=11, cv_embargo_days=0),
        min_train_days=60).date_folds(pd.bdate_range("2020-01-01", periods=110))
    assert len(folds[0].test_dates) <= 11
    with pytest.raises(cv.CVLayoutError, match="temporal.cv_gap_days"):
        assign_stages(folds, 1, gap=11)


# --- short panels: the layout scales down to its floor (cv.short_panel) ---------------------

DEFAULT_LAYOUT = cv.CVLayout(n_splits=5, min_train_days=756, n_tuning_folds=2)


def test_a_layout_that_fits_is_kept_as_requested():
    layout, adapted = cv.fit_cv_layout(2000, DEFAULT_LAYOUT, gap=11, floor=cv.CVFloor())
    assert (layout, adapted) == (DEFAULT_LAYOUT, False)


@pytest.mark.parametrize("n_dates, expected", [
    # Each window needs the floor's 21 dates after the last tuning window's purge of 11: 32.
    # 300-day panel, test_fraction 0.2: 229 development dates. Train on half of 229 - 11 = 218
    # dates (109); 5 folds get (229 - 109 - 11) // 5 = 21 dates, 4 (one tuning fold) 27, 3
    # (1 + 2 out-of-fold) 36.
    (229, cv.CVLayout(3, 109, 1)),
    # 200 dates: train 94 leaves 3 folds of 31; the floor's 63 training dates leave 3 of 42
    (200, cv.CVLayout(3, 63, 1)),
    # the floor exactly: 63 + 11 + 3 x (21 + 11) = 170 dates
    (170, cv.CVLayout(3, 63, 1)),
])
def test_short_panel_scales_the_layout_down_to_the_floor(n_dates, expected):
    layout, adapted = cv.fit_cv_layout(n_dates, DEFAULT_LAYOUT, gap=11, floor=cv.CVFloor())
    assert adapted and layout == expected
    assert layout.test_days(n_dates, 11) - 11 >= cv.CVFloor().min_test_days
    folds = cv.assign_stages(
        cv.PurgedWalkForwardSplit(layout.n_splits, min_train_days=layout.min_train_days)
        .date_folds(pd.bdate_range("2020-01-01", periods=n_dates)), layout.n_tuning_folds,
        gap=11)
    assert [f.stage for f in folds].count(cv.OOF) >= 2
    assert [f.stage for f in folds].count(cv.TUNING) >= 1
    # every window, the purged tuning one included, scores the floor's test dates
    assert all(len(f.test_dates) >= 21 for f in folds)


@pytest.mark.parametrize("horizon", [10, 20])
def test_scaled_layouts_keep_the_floor_after_the_purge_and_refuse_only_below_it(horizon):
    """A longer horizon purges more of the last tuning window: the floor's dates rise with it,
    and every panel from there on gets a layout whose windows all keep 21 scored dates (no
    panel refused between two that run)."""
    gap = horizon + 1
    need = cv.CVFloor().min_dates(True, gap)
    temporal = TemporalConfig(horizon_days=horizon, execution_delay_days=1, cv_gap_days=gap)
    with pytest.raises(cv.CVLayoutError, match=f"at least {need} development dates"):
        cv.fit_cv_layout(need - 1, DEFAULT_LAYOUT, gap=gap, floor=cv.CVFloor())
    for n_dates in range(need, need + 60, 7):
        layout, _ = cv.fit_cv_layout(n_dates, DEFAULT_LAYOUT, gap=gap, floor=cv.CVFloor())
        folds = cv.assign_stages(
            cv.PurgedWalkForwardSplit(layout.n_splits, temporal,
                                      min_train_days=layout.min_train_days)
            .date_folds(pd.bdate_range("2020-01-01", periods=n_dates)), layout.n_tuning_folds,
            gap=gap)
        assert min(len(f.test_dates) for f in folds) >= 21


@pytest.mark.parametrize("n_dates", [805, 840, 870])
def test_a_panel_just_short_of_the_layout_is_scaled_down_not_kept_with_tiny_folds(n_dates):
    """About four years of dates: the requested layout would fit with 5-20 test dates per fold
    (nested scores on a week of dates, or none); it is scaled down like a short panel."""
    assert 1 <= DEFAULT_LAYOUT.test_days(n_dates, 11) < cv.CVFloor().min_test_days
    layout, adapted = cv.fit_cv_layout(n_dates, DEFAULT_LAYOUT, gap=11, floor=cv.CVFloor())
    assert adapted and layout.test_days(n_dates, 11) - 11 >= cv.CVFloor().min_test_days
    assert layout.min_train_days == (n_dates - 11) // 2 and layout.n_splits == 5
    # with adaptation off the requested layout is kept while every fold has a test date
    assert cv.fit_cv_layout(n_dates, DEFAULT_LAYOUT, gap=11, floor=cv.CVFloor(),
                            adapt=False) == (DEFAULT_LAYOUT, False)


def test_a_small_layout_of_the_users_own_on_fewer_dates_than_the_floor_is_kept():
    small = cv.CVLayout(n_splits=2, min_train_days=40, n_tuning_folds=1)
    assert small.test_days(86, 11) == 17  # under the floor's 21, on under its 170 dates
    assert cv.fit_cv_layout(86, small, gap=11, floor=cv.CVFloor()) == (small, False)


def test_without_tuning_folds_the_floor_has_two_out_of_fold_folds():
    layout, _ = cv.fit_cv_layout(200, cv.CVLayout(5, 756, 0), gap=11, floor=cv.CVFloor())
    assert layout.n_tuning_folds == 0 and layout.n_splits >= 2
    with pytest.raises(cv.CVLayoutError, match="at least 116 development dates"):
        cv.fit_cv_layout(115, cv.CVLayout(5, 756, 0), gap=11, floor=cv.CVFloor())


def test_below_the_floor_the_error_names_the_dates_needed_and_the_parameters():
    with pytest.raises(cv.CVLayoutError) as err:
        cv.fit_cv_layout(169, DEFAULT_LAYOUT, gap=11, floor=cv.CVFloor())
    message = str(err.value)
    assert "169 development dates" in message and "at least 170 development dates" in message
    for parameter in ("periods.test_fraction", "cv.short_panel.floor", "temporal.cv_gap_days"):
        assert parameter in message


def test_adaptation_off_refuses_a_short_panel_and_says_how_to_turn_it_on():
    with pytest.raises(cv.CVLayoutError, match="cv.short_panel.adapt: true"):
        cv.fit_cv_layout(229, DEFAULT_LAYOUT, gap=11, floor=cv.CVFloor(), adapt=False)


def test_layout_params_read_the_floor_from_parameters():
    params = {"n_splits": 4, "min_train_days": 200, "n_tuning_folds": 1,
              "short_panel": {"adapt": True, "floor": {"min_train_days": 50, "min_test_days": 10,
                                                       "n_oof_folds": 3}}}
    assert cv.layout_params(params) == (cv.CVLayout(4, 200, 1), cv.CVFloor(50, 10, 3), True)
