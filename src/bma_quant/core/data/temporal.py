"""Temporal configuration: horizon, execution delay, purge gap and embargo (DESIGN §3, seed §3.1)."""

from __future__ import annotations

from dataclasses import dataclass


class TemporalConfigError(ValueError):
    """A temporal setting that would let label windows leak into test windows."""


@dataclass(frozen=True)
class TemporalConfig:
    horizon_days: int = 10
    execution_delay_days: int = 1
    cv_gap_days: int = 11
    cv_embargo_days: int = 3

    @property
    def label_span(self) -> int:
        """Trading days from a row's date to the end of its label window (d + h)."""
        return self.execution_delay_days + self.horizon_days

    @classmethod
    def from_params(cls, temporal: dict) -> TemporalConfig:
        config = cls(
            horizon_days=int(temporal["prediction_horizon_days"]),
            execution_delay_days=int(temporal["execution_delay_days"]),
            cv_gap_days=int(temporal["cv_gap_days"]),
            cv_embargo_days=int(temporal["cv_embargo_days"]),
        )
        validate_temporal_config(config)
        return config


def validate_temporal_config(config: TemporalConfig) -> TemporalConfig:
    """Refuse settings under which a training label window can reach into a test window.

    A row at t is labelled with close(t+d) -> close(t+d+h), so the purge gap between the last
    training date and the first test date must be at least d + h trading days.
    """
    h, d = config.horizon_days, config.execution_delay_days
    if h < 1:
        raise TemporalConfigError(f"prediction_horizon_days must be >= 1, got {h}")
    if d < 0:
        raise TemporalConfigError(f"execution_delay_days must be >= 0, got {d}")
    if config.cv_embargo_days < 0:
        raise TemporalConfigError(f"cv_embargo_days must be >= 0, got {config.cv_embargo_days}")
    if config.cv_gap_days < h + d:
        raise TemporalConfigError(
            f"cv_gap_days = {config.cv_gap_days} is smaller than execution_delay_days + "
            f"prediction_horizon_days = {d} + {h} = {h + d}: the labels of the last training rows "
            f"would overlap the test window (look-ahead). Set temporal.cv_gap_days >= {h + d}."
        )
    return config
