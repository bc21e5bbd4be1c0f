"""synthetic_data: a synthetic market with known answers, written to data/01_raw/synthetic_*."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
