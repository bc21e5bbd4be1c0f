"""Factors and their selection: the factor library, the fear-greed composite, per-date transforms, decay and smoothing, selection, the run-time leak audit and the fitted feature specification."""
