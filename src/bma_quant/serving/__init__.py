"""Serving: the raw-panel -> prediction chain, its MLflow pyfunc wrapper and registry logic.

MLflow is imported here (never in ``core``); ``chain`` itself is plain Python and pickles.
"""

from bma_quant.serving.chain import PanelCleaner, PredictionChain

__all__ = ["PanelCleaner", "PredictionChain"]
