"""stacking: meta-learner, regime soft weights and pseudo-BMA over out-of-fold predictions."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
