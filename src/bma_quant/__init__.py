"""BMA Quant: a leak-free, regime-aware stacked ensemble for forward stock returns."""

__version__ = "0.1.0"
