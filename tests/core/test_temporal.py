import pytest

from bma_quant.core.data.temporal import (
    TemporalConfig,
    TemporalConfigError,
    validate_temporal_config,
)


def test_seed_gap_of_five_days_at_horizon_ten_is_refused_naming_both_numbers():
    with pytest.raises(TemporalConfigError) as err:
        validate_temporal_config(TemporalConfig(horizon_days=10, execution_delay_days=1,
                                                cv_gap_days=5, cv_embargo_days=3))
    message = str(err.value)
    assert "cv_gap_days = 5" in message and "1 + 10 = 11" in message


def test_gap_equal_to_delay_plus_horizon_is_accepted():
    config = validate_temporal_config(TemporalConfig(10, 1, 11, 3))
    assert config.label_span == 11


def test_from_params_validates():
    params = {"prediction_horizon_days": 10, "execution_delay_days": 1, "cv_gap_days": 10,
              "cv_embargo_days": 3}
    with pytest.raises(TemporalConfigError):
        TemporalConfig.from_params(params)
